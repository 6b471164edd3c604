"""MediaPipe BlazeFace full-range, run from the model that ships inside the mediapipe wheel.

The legacy ``mp.solutions.face_detection`` API ignores ``min_detection_confidence`` for the
full-range model (its subgraph hard-codes 0.6), so we build the graph ourselves around the generic
``FaceDetection`` subgraph with the full-range options and a low score floor, and apply the
caller's threshold to the scores it returns.
"""

from __future__ import annotations

import numpy as np
from google.protobuf import text_format
from mediapipe.framework import calculator_pb2
from mediapipe.python.solution_base import SolutionBase

from ..detection import Face, clip_box

# Lowest score the graph reports; callers filter above it. Lower only adds noise.
SCORE_FLOOR = 0.05

_GRAPH = """
input_stream: "IMAGE:image"
output_stream: "DETECTIONS:detections"
node {
  calculator: "ToImageCalculator"
  input_stream: "IMAGE_CPU:image"
  output_stream: "IMAGE:multi_backend_image"
}
node {
  calculator: "FaceDetection"
  input_stream: "IMAGE:multi_backend_image"
  output_stream: "DETECTIONS:detections"
  node_options: {
    [type.googleapis.com/mediapipe.FaceDetectionOptions] {
      model_path: "mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite"
      tensor_width: 192
      tensor_height: 192
      num_layers: 1
      strides: 4
      interpolated_scale_aspect_ratio: 0.0
      num_boxes: 2304
      x_scale: 192.0
      y_scale: 192.0
      h_scale: 192.0
      w_scale: 192.0
      min_score_thresh: %(floor)f
      delegate { xnnpack {} }
    }
  }
}
"""


class BlazeFaceFullRange:
    """Fast (about 5 ms a frame on one core) but blind to faces under ~1/20 of the image height."""

    name = "mediapipe"

    def __init__(self) -> None:
        config = text_format.Parse(_GRAPH % {"floor": SCORE_FLOOR}, calculator_pb2.CalculatorGraphConfig())
        self._graph = SolutionBase(graph_config=config, outputs=["detections"])

    def detect(self, image: np.ndarray, threshold: float) -> list[Face]:
        height, width = image.shape[:2]
        result = self._graph.process({"image": np.ascontiguousarray(image[:, :, :3])})
        faces = []
        for detection in result.detections or ():
            score = float(detection.score[0])
            if score < threshold:
                continue
            rel = detection.location_data.relative_bounding_box
            box = clip_box(rel.xmin * width, rel.ymin * height, rel.width * width, rel.height * height, width, height)
            if box[2] > 0 and box[3] > 0:
                faces.append(Face(box, score))
        return faces

    def close(self) -> None:
        self._graph.close()
