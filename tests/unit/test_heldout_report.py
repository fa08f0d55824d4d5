"""The held-out report: the touch rule, the goal lines, the counts, and a whole run.

The whole run judges synthetic photographs with the demo checkpoint (always), and the CI
sample of the real held-out list when `make test` has fetched it. Neither asserts the goals
themselves: the model that should meet them is trained elsewhere; these tests check that
what the report says is what was measured.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import DEMO_CHECKPOINT, REPO_ROOT
from veracity.checkpoint import load_checkpoint
from veracity.cli import main
from veracity.corpus.heldout import HELDOUT_COLUMNS, HeldOutPhoto, read_heldout_manifest
from veracity.corpus.manifest import CorpusError
from veracity.edits import make_fake
from veracity.evaluation.heldout import (
    PHOTO_KINDS,
    HeldOutItem,
    HeldOutOptions,
    edit_generator,
    judge_heldout,
    working_image,
)
from veracity.evaluation.heldout_report import (
    Goal,
    build_heldout_report,
    count_verdicts,
    format_summary,
    goals,
)
from veracity.evaluation.intervals import GOAL_MEASURES, _Columns, goal_intervals
from veracity.evaluation.localisation import (
    cell_touches,
    most_suspicious_cell,
    top_cell_touches,
    touching_share,
)
from veracity.inference.predictor import Predictor
from veracity.overlay import cell_box

HELDOUT_DIR = REPO_ROOT / "data" / "heldout"


def _sample_fetched() -> bool:
    try:
        photos = read_heldout_manifest(sample=True)
    except CorpusError:  # a broken list fails its own tests, not this skip
        return False
    return all((HELDOUT_DIR / p.entry.local_path).is_file() for p in photos)


# ---- the touch rule -------------------------------------------------------------------


def test_the_most_suspicious_cell_is_the_highest_and_the_first_on_a_tie() -> None:
    assert most_suspicious_cell([[0.1, 0.2], [0.9, 0.3]]) == (1, 0)
    assert most_suspicious_cell([[0.1, 0.8, 0.8], [0.8, 0.2, 0.3]]) == (0, 1)
    with pytest.raises(ValueError, match="non-empty"):
        most_suspicious_cell([])


def test_a_cell_touches_the_edit_when_its_rectangle_holds_one_marked_pixel() -> None:
    # 10 rows x 7 columns divided into 3 x 3 cells: rows 0-2 | 3-5 | 6-9, columns 0-1 | 2-3 | 4-6.
    mask = np.zeros((10, 7), dtype=bool)
    mask[5, 4] = True  # the last row of the middle band, the first column of the right band
    touched = {(r, c) for r in range(3) for c in range(3) if cell_touches(mask, (r, c), (3, 3))}
    assert touched == {(1, 2)}
    left, top, right, bottom = cell_box(1, 2, 3, 3, 7, 10)
    assert (left, top, right, bottom) == (4, 3, 7, 6)


def test_chance_is_the_share_of_cells_holding_an_edited_pixel() -> None:
    mask = np.zeros((40, 40), dtype=bool)
    mask[15:25, 5:10] = True  # rows across the middle line, columns in the left half
    assert touching_share(mask, (2, 2)) == 0.5
    assert touching_share(np.ones((8, 8), dtype=bool), (4, 4)) == 1.0


def test_the_top_cell_is_checked_against_the_mask_not_any_cell() -> None:
    mask = np.zeros((40, 40), dtype=bool)
    mask[30:35, 30:35] = True  # inside cell (1, 1) of a 2 x 2 grid
    assert top_cell_touches([[0.1, 0.2], [0.3, 0.9]], mask) == ((1, 1), True)
    assert top_cell_touches([[0.9, 0.2], [0.3, 0.8]], mask) == ((0, 0), False)


# ---- the goal lines --------------------------------------------------------------------


def test_a_goal_passes_on_its_bound_and_fails_past_it_or_unmeasured() -> None:
    at_least = Goal("g", "answered real", 0.85, 0.85, at_most=False, detail="17 of 20")
    assert at_least.passed
    assert at_least.line() == "PASS  answered real: 85.0% (goal >= 85.0%; 17 of 20)"
    below = Goal("g", "answered real", 0.84, 0.85, at_most=False, detail="")
    assert not below.passed
    assert below.line().startswith("FAIL  answered real: 84.0%")
    assert not Goal("g", "fake", 1 / 42, 0.0, at_most=True, detail="1 of 42").passed
    assert Goal("g", "fake", 0.0, 0.0, at_most=True, detail="0 of 42").passed
    unmeasured = Goal("g", "touch", math.nan, 0.7, at_most=False, detail="0 of 0")
    assert not unmeasured.passed
    assert "n/a" in unmeasured.line()
    ece = Goal("ece", "ECE", 0.0412, 0.05, at_most=True, detail="", percent=False)
    assert ece.passed
    assert "0.041 (goal <= 0.050" in ece.line()


def _item(arm: str, verdict: str, **fields: object) -> HeldOutItem:
    values: dict[str, object] = {
        "source": "scikit-image",
        "photo": "scikit-image/skimage/data/coffee.png",
        "arm": arm,
        "kind": "splice" if arm == "edited" else None,
        "label": "fake" if arm == "edited" else "real",
        "width": 600,
        "height": 400,
        "verdict": verdict,
        "fake_prob": 0.9 if verdict == "fake" else 0.1,
        **fields,
    }
    return HeldOutItem(**values)  # type: ignore[arg-type]


def test_goals_read_the_counts_they_name() -> None:
    items = [
        *[_item("jpeg", "real") for _ in range(17)],
        *[_item("jpeg", "inconclusive", reasons=["out_of_distribution"]) for _ in range(2)],
        _item("jpeg", "fake"),
        _item("jpeg", "error", error="cannot decode"),
        *[_item("edited", "fake", touches=True, cells_touching=0.25) for _ in range(6)],
        *[_item("edited", "fake", touches=False, cells_touching=0.25) for _ in range(2)],
        _item("edited", "real", touches=True),
        _item("edited", "inconclusive", touches=None),
    ]
    report = build_heldout_report(items, checkpoint={}, options=HeldOutOptions())
    by_name = {g.name: g for g in goals(report)}

    assert not by_name["photos_never_fake"].passed
    assert by_name["photos_never_fake"].detail == "1 of 20"
    assert by_name["photos_real"].measured == pytest.approx(17 / 20)
    assert by_name["photos_real"].passed
    assert by_name["edited_fake"].measured == pytest.approx(8 / 10)
    assert not by_name["edited_real"].passed  # 1 of 10 is over 5%
    assert by_name["edit_located"].measured == pytest.approx(6 / 8)
    assert by_name["edit_located"].detail == "6 of 8 with a grid; a random cell: 25%"
    assert [g["name"] for g in report["goals"]] == list(by_name)
    photos = report["photos"]["jpeg"]["overall"]
    assert (photos["images"], photos["errors"]) == (20, 1)
    assert photos["reasons"] == {"out_of_distribution": 2}
    assert report["calibration"]["real"] == 20
    assert report["calibration"]["fake"] == 10
    assert "1 image(s) could not be judged" in format_summary(report)


def test_counts_add_up_and_shares_are_of_the_judged_images() -> None:
    items = [_item("jpeg", "real"), _item("jpeg", "fake"), _item("jpeg", "error", error="x")]
    counts = count_verdicts(items)
    assert counts["real"] + counts["inconclusive"] + counts["fake"] == counts["images"] == 2
    assert counts["errors"] == 1
    assert counts["fake_rate"] == 0.5
    assert math.isnan(count_verdicts([])["real_rate"])


# ---- a whole run ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_predictor() -> Predictor:
    return Predictor(load_checkpoint(DEMO_CHECKPOINT), torch.device("cpu"))


def _synthetic_list(root: Path) -> list[HeldOutPhoto]:
    """Two textured pictures saved as a held-out source's files, and the list naming them."""
    rng = np.random.default_rng(0)
    rows = []
    for index, (width, height) in enumerate([(320, 240), (200, 300)]):
        y, x = np.mgrid[0:height, 0:width]
        base = np.stack([x * 255 / width, y * 255 / height, (x + y) % 256], axis=-1)
        pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        path = f"skimage/data/picture{index}.png"
        (root / "scikit-image" / path).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(root / "scikit-image" / path)
        data = (root / "scikit-image" / path).read_bytes()
        fields = ["scikit-image", "pypi", "wheel", "0.26.0", "CC0-1.0", "heldout", "real_photo"]
        fields += [path, "-", hashlib.sha256(data).hexdigest(), str(len(data)), "-", "ci", "x"]
        rows.append("\t".join(fields))
    listed = root / "heldout.tsv"
    listed.write_text("\t".join(HELDOUT_COLUMNS) + "\n" + "\n".join(rows) + "\n")
    return read_heldout_manifest(listed)


SYNTHETIC = HeldOutOptions(max_side=256)


@pytest.fixture(scope="module")
def synthetic_run(
    tmp_path_factory: pytest.TempPathFactory, demo_predictor: Predictor
) -> tuple[Path, list[HeldOutPhoto], list[HeldOutItem]]:
    root = tmp_path_factory.mktemp("heldout")
    photos = _synthetic_list(root)
    return root, photos, judge_heldout(demo_predictor, photos, root, SYNTHETIC, progress=False)


@pytest.mark.slow
def test_each_photo_is_judged_as_shipped_re_saved_and_once_per_edit_kind(
    synthetic_run: tuple[Path, list[HeldOutPhoto], list[HeldOutItem]],
) -> None:
    _, photos, items = synthetic_run

    assert len(items) == len(photos) * (2 + len(PHOTO_KINDS))
    assert all(i.error is None for i in items)
    edited = [i for i in items if i.arm == "edited"]
    assert {(i.photo, i.kind) for i in edited} == {
        (p.entry.local_path, k) for p in photos for k in PHOTO_KINDS
    }
    assert all(i.label == "fake" for i in edited)
    assert all(i.label == "real" for i in items if i.arm != "edited")
    assert all(0.03 <= (i.edited_share or 0) <= 0.15 for i in edited)
    # The demo checkpoint scores a 4 x 4 grid of patches: every copy has a top cell.
    assert all(i.top_cell is not None and i.touches is not None for i in edited)
    assert all(0 < (i.cells_touching or 0) <= 1 for i in edited)
    # Re-saved and edited copies are at the working size; as shipped, at the file's.
    assert {(i.width, i.height) for i in items if i.arm != "untouched"} == {(256, 192), (171, 256)}
    assert {(i.width, i.height) for i in items if i.arm == "untouched"} == {(320, 240), (200, 300)}


@pytest.mark.slow
def test_numbers_are_the_predictors_and_touch_is_the_edits_mask(
    synthetic_run: tuple[Path, list[HeldOutPhoto], list[HeldOutItem]], demo_predictor: Predictor
) -> None:
    root, photos, items = synthetic_run

    first = photos[0].entry.local_path
    shipped = next(i for i in items if i.arm == "untouched" and i.photo == first)
    prediction, verdict = demo_predictor.assess(root / first, robustness_check=False)
    assert shipped.fake_prob == prediction.fake_prob
    assert shipped.verdict == verdict.verdict
    # The same edit again from its seed: its mask decides "touches" for the recorded cell.
    for kind in ("smooth", "copy_move"):
        item = next(i for i in items if i.arm == "edited" and i.kind == kind and i.photo == first)
        image = working_image(root / first, SYNTHETIC.max_side)
        edit = make_fake(image, edit_generator(SYNTHETIC.seed, first, kind), kind)
        assert item.edited_share == round(float(edit.mask.mean()), 5)
        assert item.top_cell is not None
        assert item.touches == cell_touches(edit.mask, item.top_cell, (4, 4))


@pytest.mark.slow
def test_a_run_over_part_of_the_list_makes_the_same_splices_with_its_donors(
    synthetic_run: tuple[Path, list[HeldOutPhoto], list[HeldOutItem]], demo_predictor: Predictor
) -> None:
    root, photos, items = synthetic_run
    options = HeldOutOptions(max_side=SYNTHETIC.max_side, kinds=("splice",))

    part = judge_heldout(demo_predictor, photos[1:], root, options, donors=photos, progress=False)

    (splice,) = [i for i in part if i.arm == "edited"]
    whole = next(i for i in items if i.kind == "splice" and i.photo == photos[1].entry.local_path)
    # The same edit (its mask), so the same image: equal up to the batch's float rounding.
    assert (splice.edited_share, splice.cells_touching) == (
        whole.edited_share,
        whole.cells_touching,
    )
    assert splice.fake_prob == pytest.approx(whole.fake_prob, abs=1e-6)
    with pytest.raises(ValueError, match="not among the donors"):
        judge_heldout(demo_predictor, photos, root, options, donors=photos[:1], progress=False)


@pytest.mark.slow
@pytest.mark.skipif(
    not _sample_fetched(),
    reason="the held-out CI sample is absent: `make test` fetches it "
    "(veracity fetch-corpus --heldout --sample)",
)
def test_the_report_on_the_ci_sample_adds_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    # One photograph's clips: the video arm's path on real photographs, at a CI price.
    args = ["evaluate", "--heldout", str(HELDOUT_DIR), "--sample", "--max-side", "384"]
    args += ["--videos", "1"]
    assert main([*args, "--report", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    sample = read_heldout_manifest(sample=True)

    assert report["photographs"] == len(sample)
    assert report["sources"] == sorted({p.source for p in sample})
    for arm in ("untouched", "jpeg"):
        overall = report["photos"][arm]["overall"]
        by_source = report["photos"][arm]["by_source"]
        assert overall["images"] + overall["errors"] == len(sample)
        assert sum(s["images"] for s in by_source.values()) == overall["images"]
        for counts in (overall, *by_source.values()):
            assert counts["real"] + counts["inconclusive"] + counts["fake"] == counts["images"]
    edited = report["edited"]
    assert edited["overall"]["images"] + edited["overall"]["errors"] == len(sample) * len(
        PHOTO_KINDS
    )
    assert sorted(edited["by_kind"]) == sorted(PHOTO_KINDS)
    assert sum(k["fake"] for k in edited["by_kind"].values()) == edited["overall"]["fake"]
    assert sum(s["real"] for s in edited["by_source"].values()) == edited["overall"]["real"]
    fakes = [i for i in report["items"] if i["arm"] == "edited" and i["verdict"] == "fake"]
    where = edited["overall"]["localisation"]
    assert where["judged_fake_with_grid"] == len(fakes)
    assert where["touching"] == sum(1 for i in fakes if i["touches"])
    assert [g["name"] for g in report["goals"]] == [
        "photos_never_fake",
        "photos_real",
        "edited_fake",
        "edited_real",
        "edit_located",
        "video_real",
        "video_edit_found",
        "calibration",
    ]
    for goal in report["goals"]:
        assert goal["line"] in printed
        assert goal["line"].startswith("PASS" if goal["passed"] else "FAIL")
    for source in report["sources"]:
        assert source in printed
    video = report["video"]
    assert video["photographs"] == 1
    for truth in ("real", "edited"):
        overall = video[truth]["overall"]
        assert overall["images"] + overall["errors"] == 2  # one clip per codec
        assert overall["real"] + overall["inconclusive"] + overall["fake"] == overall["images"]
    assert "real clips (truth: real)" in printed
    for name in ("photos", "edited_by_kind", "edited_by_source", "reliability", "video"):
        assert (out / f"heldout_{name}.png").read_bytes().startswith(b"\x89PNG")


def test_goal_intervals_resample_photographs_not_items() -> None:
    # Two photographs: one whose six edited copies are all called fake and whose re-saved
    # copy is real, one whose copies are all missed and whose re-saved copy is unsure.
    def photo(name: str, verdict: str, real: str) -> list[HeldOutItem]:
        copies = [_item("edited", verdict, photo=name, touches=True) for _ in range(6)]
        return [_item("jpeg", real, photo=name), *copies]

    items = photo("a.jpg", "fake", "real") + photo("b.jpg", "inconclusive", "inconclusive")
    intervals = goal_intervals(items, resamples=400)
    # 12 copies as independent draws would give a narrow interval around 50%; as two
    # photographs, a resample holds a's copies only, b's only, or both.
    assert intervals["edited_fake"] == pytest.approx((0.0, 1.0))
    assert intervals["photos_real"] == pytest.approx((0.0, 1.0))
    # None of 2 photographs called fake: a resample can never see one, but 0 of 2 is far
    # from certain (the exact binomial bound over the photographs).
    assert intervals["photos_never_fake"] == pytest.approx((0.0, 0.8419), abs=1e-4)
    # Localisation rests on the one photograph whose copies were called fake.
    assert intervals["edit_located"] == pytest.approx((0.025, 1.0), abs=1e-3)
    report = build_heldout_report(items, checkpoint={}, options=HeldOutOptions())
    assert report["intervals"]["resampled"].startswith("photographs")
    by_name = {g["name"]: g for g in report["goals"]}
    assert tuple(by_name["edited_fake"]["interval"]) == pytest.approx((0.0, 1.0))
    assert "95% interval 0.0% to 100.0%" in by_name["edited_fake"]["line"]


def test_an_undefined_measure_has_no_interval_and_one_photograph_none_to_speak_of() -> None:
    items = [_item("jpeg", "real"), _item("edited", "inconclusive", touches=True)]
    intervals = goal_intervals(items, resamples=50)
    assert all(math.isnan(b) for b in intervals["edit_located"])
    # A single photograph: every resample is that photograph; the exact bound still says
    # that one photograph proves little.
    assert intervals["photos_real"] == pytest.approx((0.025, 1.0), abs=1e-3)
    many = [_item("jpeg", "inconclusive", photo=f"{n}.jpg") for n in range(42)]
    # The held-out list's "0 of 42 called fake": at most about 8.4%, not 0%.
    assert goal_intervals(many, resamples=50)["photos_never_fake"] == pytest.approx(
        (0.0, 0.0841), abs=1e-3
    )
    goal = Goal(
        "g", "touch", math.nan, 0.7, at_most=False, detail="0 of 0", interval=(math.nan, math.nan)
    )
    assert "interval" not in goal.line()


def test_the_resampled_measures_are_the_reports_own_on_every_item() -> None:
    # intervals.py measures the goals on arrays (2,000 resamples); on all the items it must
    # give exactly what the report measures, or the intervals would be about other numbers.
    committed = Path(__file__).parents[2] / "bench/results/demo-heldout/report.json"
    report = json.loads(committed.read_text())
    items = [
        HeldOutItem(**(d | {"top_cell": tuple(d["top_cell"]) if d["top_cell"] else None}))
        for d in report["items"]
    ]
    judged = [i for i in items if i.error is None]
    columns = _Columns.of(judged)
    everything = np.arange(len(judged))
    rebuilt = build_heldout_report(items, checkpoint={}, options=HeldOutOptions())
    for goal in goals(rebuilt):
        measured = GOAL_MEASURES[goal.name](columns, everything)
        assert measured == pytest.approx(goal.measured), goal.name
