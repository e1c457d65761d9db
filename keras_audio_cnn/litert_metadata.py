"""LiteRT model metadata for a `.tflite` classifier of waveforms, as MediaPipe reads it.

    content = litert_metadata.with_metadata(content, class_names, sample_rate=16000)

MediaPipe's `AudioClassifier` (mediapipe.tasks.python.audio) refuses a `.tflite`
without metadata ("Audio classifier models require TFLite Model Metadata"): it takes the input's sample rate and channel count from
the input tensor's `AudioProperties`, and the class names from a label file
(one name a line) tied to the output tensor (`TENSOR_AXIS_LABELS`). The metadata
is the flatbuffer of MediaPipe's `metadata_schema.fbs` (file identifier "M001"),
kept in the model's `metadata` list under the name "TFLITE_METADATA"; the label
file is a zip archive appended to the flatbuffer, which LiteRT's interpreter
ignores. Both are written here with the `flatbuffers` package and LiteRT's model
schema that TensorFlow ships, so exporting needs no MediaPipe (whose own writers,
`mediapipe.tasks.python.metadata`, have no audio writer, and in 1.2.3 fail to import:
`mediapipe.tasks.cc` is not in the wheel).

Schema fields are written by their slot numbers (the order of each table's
fields in `metadata_schema.fbs`; a union takes two slots, its type first).
"""

import io
import zipfile

import flatbuffers
import numpy as np
from tensorflow.lite.python import schema_py_generated as schema

from keras_audio_cnn.errors import PredictionError

METADATA_NAME = "TFLITE_METADATA"  # the model's metadata entry MediaPipe looks for
LABEL_FILE = "labels.txt"
_METADATA_IDENTIFIER = b"M001"
_MODEL_IDENTIFIER = b"TFL3"
# The first schema version with AudioProperties: the parser version the file needs.
_MIN_PARSER_VERSION = "1.3.0"
_TENSOR_AXIS_LABELS = 2  # AssociatedFileType
_FEATURE_PROPERTIES, _AUDIO_PROPERTIES = 1, 4  # ContentProperties (0 is NONE)
# schema.fbs: Buffer.data (force_align: 16). The generated `BufferT.Pack` aligns to one
# byte, so after a buffer of odd length float weights could start at odd addresses.
_BUFFER_ALIGNMENT = 16


def with_metadata(content, class_names, sample_rate, channels=1, activation="softmax",
                  name="keras_audio_cnn", description=None):
    """`content` (a `.tflite` flatbuffer of one waveform input, one score output) with
    metadata for MediaPipe's AudioClassifier: the input's sample rate and channels, the
    class names as `labels.txt` on the output, and what the scores mean (`activation`:
    "softmax" probabilities, or "sigmoid" tags). Replaces earlier metadata."""
    names = [str(n) for n in class_names]
    bad = [n for n in names if not n or "\n" in n or "\r" in n]
    if bad:
        raise PredictionError(f"class name {bad[0]!r} cannot be a line of {LABEL_FILE}")
    scores = ("each class's sigmoid probability (tags, several may hold)"
              if activation == "sigmoid" else "class probabilities (a softmax), summing to 1")
    metadata = _model_metadata(
        name=name,
        description=description or f"{len(names)} classes of {sample_rate} Hz audio",
        input_description=(f"a clip of {channels}-channel audio at {sample_rate} Hz, "
                           "float32 samples in [-1, 1]"),
        output_description=scores, sample_rate=sample_rate, channels=channels,
        labels_description="the class names, in output order")
    model = _with_metadata_buffer(bytes(content), metadata)
    labels = ("\n".join(names) + "\n").encode("utf-8")
    archive = io.BytesIO(model)
    archive.seek(0, io.SEEK_END)
    # Stored, not deflated, as MediaPipe's own writer appends them.
    with zipfile.ZipFile(archive, "a", compression=zipfile.ZIP_STORED) as files:
        files.writestr(LABEL_FILE, labels)
    return archive.getvalue()


def _with_metadata_buffer(content, metadata):
    """The model flatbuffer with `metadata` as its TFLITE_METADATA buffer (the model
    unpacked and packed again, as MediaPipe's MetadataPopulator does; any archive
    appended to `content` is dropped)."""
    if not schema.Model.ModelBufferHasIdentifier(content, 0):
        raise PredictionError("not a .tflite flatbuffer (no TFL3 identifier)")
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(content, 0))
    if any(buffer.offset for buffer in model.buffers or []):
        raise PredictionError("the .tflite keeps its weights outside the flatbuffer (a model "
                              "over 2 GB); LiteRT metadata cannot be added to it here")
    for buffer in model.buffers or []:
        buffer.__class__ = _AlignedBufferT
    model.buffers = model.buffers or []
    model.metadata = [m for m in model.metadata or [] if m.name.decode() != METADATA_NAME]
    model.buffers.append(_AlignedBufferT(data=np.frombuffer(metadata, np.uint8)))
    model.metadata.append(schema.MetadataT(name=METADATA_NAME, buffer=len(model.buffers) - 1))
    builder = flatbuffers.Builder(len(content) + len(metadata) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=_MODEL_IDENTIFIER)
    return bytes(builder.Output())


class _AlignedBufferT(schema.BufferT):
    """A model buffer whose data starts on 16 bytes (`_BUFFER_ALIGNMENT`)."""

    def Pack(self, builder):
        if self.data is None or not len(self.data):
            return super().Pack(builder)
        payload = np.asarray(self.data, np.uint8).tobytes()
        builder.StartVector(1, len(payload), _BUFFER_ALIGNMENT)
        builder.head -= len(payload)
        builder.Bytes[builder.head:builder.head + len(payload)] = payload
        data = builder.EndVector()
        schema.BufferStart(builder)
        schema.BufferAddData(builder, data)
        return schema.BufferEnd(builder)


def _model_metadata(name, description, input_description, output_description, sample_rate,
                    channels, labels_description):
    """The ModelMetadata flatbuffer of one subgraph: an audio input, a score output."""
    b = flatbuffers.Builder(1024)

    def table(*slots):
        """A table of `(slot, kind, value)` fields; offsets must be built before."""
        b.StartObject(max((slot for slot, _, _ in slots), default=-1) + 1)
        for slot, kind, value in slots:
            {"offset": b.PrependUOffsetTRelativeSlot, "uint": b.PrependUint32Slot,
             "byte": b.PrependUint8Slot}[kind](slot, value, 0)
        return b.EndObject()

    def vector(offsets):
        b.StartVector(4, len(offsets), 4)
        for offset in reversed(offsets):
            b.PrependUOffsetTRelative(offset)
        return b.EndVector()

    def floats(values):
        b.StartVector(4, len(values), 4)
        for value in reversed(values):
            b.PrependFloat32(value)
        return b.EndVector()

    def string(text):
        return b.CreateString(text)

    def stats(low, high):  # Stats: max 0, min 1
        high, low = floats([high]), floats([low])
        return table((0, "offset", high), (1, "offset", low))

    # TensorMetadata: name 0, description 1, content 3, stats 5, associated_files 6.
    # Content: content_properties_type 0, content_properties 1.
    audio = table((0, "uint", int(sample_rate)), (1, "uint", int(channels)))
    audio_content = table((0, "byte", _AUDIO_PROPERTIES), (1, "offset", audio))
    waveform = table((0, "offset", string("waveform")),
                     (1, "offset", string(input_description)),
                     (3, "offset", audio_content), (5, "offset", stats(-1.0, 1.0)))
    # AssociatedFile: name 0, description 1, type 2.
    labels = table((0, "offset", string(LABEL_FILE)), (1, "offset", string(labels_description)),
                   (2, "byte", _TENSOR_AXIS_LABELS))
    feature_content = table((0, "byte", _FEATURE_PROPERTIES), (1, "offset", table()))
    scores = table((0, "offset", string("probabilities")),
                   (1, "offset", string(output_description)),
                   (3, "offset", feature_content), (5, "offset", stats(0.0, 1.0)),
                   (6, "offset", vector([labels])))
    # SubGraphMetadata: input_tensor_metadata 2, output_tensor_metadata 3.
    subgraph = table((2, "offset", vector([waveform])), (3, "offset", vector([scores])))
    # ModelMetadata: name 0, description 1, subgraph_metadata 3, min_parser_version 7.
    root = table((0, "offset", string(name)), (1, "offset", string(description)),
                 (3, "offset", vector([subgraph])),
                 (7, "offset", string(_MIN_PARSER_VERSION)))
    b.Finish(root, file_identifier=_METADATA_IDENTIFIER)
    return bytes(b.Output())
