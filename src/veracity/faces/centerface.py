"""CenterFace (Xu et al., 2019, "CenterFace: Joint Face Detection and Alignment Using Face as
Point"), run with ONNX Runtime.

The network predicts, at a quarter of the input's resolution, a heatmap of face centres and
for each cell the box's size (log scale), the centre's sub-cell offset and five landmarks
relative to the box. Decoding keeps the cells above a threshold and suppresses overlapping
boxes. The published model's input is fixed at 10 x 3 x 32 x 32; it is fully convolutional
(convolutions and transposed convolutions only), so the batch, height and width are made
symbolic once at load and any input whose sides are multiples of 32 runs as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

_INPUT = "input.1"
# heatmap (1 channel), scale (2: log height, log width), offset (2: y, x), landmarks (10:
# y then x of each point, relative to the box's top-left corner, in box heights and widths)
_OUTPUTS = ("537", "538", "539", "540")
_STRIDE = 4
ALIGN = 32  # the network downsamples five times; sides must divide by 2**5

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Detections:
    """Faces in input pixels: boxes (n, 4) as left, top, right, bottom; scores (n,);
    landmarks (n, 5, 2) as x, y: the eyes, the nose tip and the mouth's corners."""

    boxes: FloatArray
    scores: FloatArray
    landmarks: FloatArray

    def __len__(self) -> int:
        return len(self.scores)


def dynamic_model(model: bytes) -> bytes:
    """The model with a symbolic batch, height and width on its input and outputs."""
    import onnx  # only the face detector needs it, once per process

    proto = onnx.load_from_string(model)
    graph = proto.graph
    (image,) = [i for i in graph.input if i.name == _INPUT]
    _set_dims(image, ("batch", 3, "height", "width"))
    for output in graph.output:
        channels = output.type.tensor_type.shape.dim[1].dim_value
        _set_dims(output, ("batch", channels, "rows", "columns"))
    return bytes(proto.SerializeToString())


def _set_dims(value: object, dims: tuple[str | int, ...]) -> None:
    shape = value.type.tensor_type.shape  # type: ignore[attr-defined]
    for dim, new in zip(shape.dim, dims, strict=True):
        if isinstance(new, str):
            dim.dim_param = new  # assigning the one clears the other (a oneof)
        else:
            dim.dim_value = new


def create_session(model: bytes, *, threads: int) -> object:
    """An ONNX Runtime session on the CPU, for ``model`` (the published file's bytes)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    # The old exporter lists every initializer as a graph input too; ONNX Runtime warns
    # about each one at load. Errors are still logged.
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(
        dynamic_model(model), sess_options=options, providers=["CPUExecutionProvider"]
    )


def to_input(rgb: npt.NDArray[np.uint8]) -> FloatArray:
    """An H x W x 3 RGB image -> the 1 x 3 x H' x W' float input (raw 0-255 values, as the
    model was trained), zero-padded on the right and bottom to multiples of 32. Padding
    rather than stretching keeps one scale for both axes, so boxes map back exactly."""
    height, width = rgb.shape[:2]
    padded_h, padded_w = -(-height // ALIGN) * ALIGN, -(-width // ALIGN) * ALIGN
    blob = np.zeros((1, 3, padded_h, padded_w), np.float32)
    blob[0, :, :height, :width] = rgb.transpose(2, 0, 1)
    return blob


def detect(
    session: object, rgb: npt.NDArray[np.uint8], *, threshold: float, overlap: float
) -> Detections:
    """Faces in an H x W x 3 RGB image, boxes clipped to it, best first."""
    outputs = session.run(list(_OUTPUTS), {_INPUT: to_input(rgb)})  # type: ignore[attr-defined]
    heatmap, scale, offset, landmarks = (np.asarray(o, np.float32)[0] for o in outputs)
    found = decode(heatmap[0], scale, offset, landmarks, threshold=threshold)
    height, width = rgb.shape[:2]
    boxes = found.boxes.copy()
    np.clip(boxes[:, 0::2], 0, width, out=boxes[:, 0::2])
    np.clip(boxes[:, 1::2], 0, height, out=boxes[:, 1::2])
    keep = suppress(boxes, found.scores, overlap)
    return Detections(boxes[keep], found.scores[keep], found.landmarks[keep])


def decode(
    heatmap: FloatArray,
    scale: FloatArray,
    offset: FloatArray,
    landmarks: FloatArray,
    *,
    threshold: float,
) -> Detections:
    """The network's maps (heatmap rows x columns; the others channels x rows x columns) ->
    one candidate box per cell above ``threshold``, in input pixels, best first."""
    rows, columns = np.nonzero(heatmap > threshold)
    order = np.argsort(-heatmap[rows, columns], kind="stable")
    rows, columns = rows[order], columns[order]
    scores = heatmap[rows, columns]
    heights = np.exp(scale[0, rows, columns]) * _STRIDE
    widths = np.exp(scale[1, rows, columns]) * _STRIDE
    top = (rows + offset[0, rows, columns] + 0.5) * _STRIDE - heights / 2
    left = (columns + offset[1, rows, columns] + 0.5) * _STRIDE - widths / 2
    # Landmarks are placed from the unclipped corner: clipping comes after, on the box only.
    points_y = top[:, None] + landmarks[0::2, rows, columns].T * heights[:, None]
    points_x = left[:, None] + landmarks[1::2, rows, columns].T * widths[:, None]
    boxes = np.stack([left, top, left + widths, top + heights], axis=1)
    points = np.stack([points_x, points_y], axis=2)
    return Detections(boxes.astype(np.float32), scores, points.astype(np.float32))


def suppress(boxes: FloatArray, scores: FloatArray, overlap: float) -> npt.NDArray[np.intp]:
    """Greedy non-maximum suppression: indices of the boxes kept, best first.

    A dozen lines of numpy rather than OpenCV's NMSBoxes: the heatmap gives a few dozen
    candidates at most, and this keeps the detector free of OpenCV, whose NMSBoxes wants
    (x, y, width, height) lists and a second score threshold that would duplicate ours.
    """
    order = np.argsort(-scores, kind="stable")
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    kept: list[int] = []
    while order.size:
        best, rest = order[0], order[1:]
        kept.append(int(best))
        left = np.maximum(boxes[best, 0], boxes[rest, 0])
        top = np.maximum(boxes[best, 1], boxes[rest, 1])
        right = np.minimum(boxes[best, 2], boxes[rest, 2])
        bottom = np.minimum(boxes[best, 3], boxes[rest, 3])
        inter = np.clip(right - left, 0, None) * np.clip(bottom - top, 0, None)
        union = areas[best] + areas[rest] - inter
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        order = rest[iou < overlap]
    return np.asarray(kept, dtype=np.intp)
