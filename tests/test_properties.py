"""Property-based checks: random flag values, random bytes and random audio arrays.

Every outcome is a result or one clean line: never another exception, a traceback
or a hang (hypothesis's deadline).
"""

import io

import numpy as np
import pytest
import soundfile as sf
from absl import flags
from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from keras_audio_cnn import cli, config
from tfds_builders import audio_io

NUMERIC = {name: field for name, field, default in config.options_of(config.TrainConfig())
           if config.value_type(field) in (int, float)}


def parse(*argv):
    flag_values = flags.FlagValues()
    cli.define_flags(flag_values)
    flag_values(["train.py", *argv])
    return cli.from_flag_values(flag_values)


values = st.one_of(
    st.integers(min_value=-10**12, max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", "x", "1e400", "-0", "0x10", "1,2", " 3 "]),
)


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(NUMERIC)), value=values)
def test_any_value_of_a_numeric_flag_is_a_config_or_one_line(name, value):
    try:
        parsed = parse(f"--{name}={value}")
    except flags.IllegalFlagValueError as error:
        message = str(error)
        assert message.startswith(f"flag --{name}=") and "\n" not in message
        return
    # Accepted: the value is inside the option's range, and the config holds it.
    field = NUMERIC[name]
    recorded = parsed.to_flags()[name]
    for item in recorded if isinstance(recorded, list) else [recorded]:
        assert item is None or item in field.metadata["valid"]


@settings(max_examples=200, deadline=2000)
@given(data=st.binary(max_size=4096))
def test_random_bytes_decode_to_a_clip_or_one_line(data):
    try:
        clip = audio_io.load_clip(io.BytesIO(data), 8000, 400)
    except audio_io.AudioDataError as error:
        assert "\n" not in str(error) and "<in-memory audio file>" in str(error)
        return
    assert clip.dtype == np.int16 and clip.shape == (400,)


formats = st.sampled_from([("WAV", "PCM_16"), ("WAV", "PCM_24"), ("WAV", "PCM_U8"),
                           ("WAV", "FLOAT"), ("WAV", "DOUBLE"), ("FLAC", "PCM_16"),
                           ("WAVEX", "PCM_32")])
arrays = hnp.arrays(np.float64, st.tuples(st.integers(1, 300), st.integers(1, 8)),
                    elements=st.floats(allow_nan=True, allow_infinity=True, width=32))


@settings(max_examples=150, deadline=5000, suppress_health_check=[HealthCheck.too_slow])
@given(samples=arrays, rate=st.integers(1000, 192000), container=formats)
def test_random_audio_arrays_decode_to_a_clip_or_one_line(samples, rate, container):
    kind, subtype = container
    buffer = io.BytesIO()
    try:
        sf.write(buffer, samples, rate, format=kind, subtype=subtype)
    except (sf.LibsndfileError, ValueError, AssertionError):
        return  # not a file libsndfile writes (FLAC of NaN, ...): nothing to decode
    buffer.seek(0)
    try:
        clip = audio_io.load_clip(buffer, 8000, 800)
    except audio_io.AudioDataError as error:
        assert "\n" not in str(error)
        assert not np.isfinite(samples).all() or "NaN or infinite" not in str(error)
        return
    assert clip.dtype == np.int16 and clip.shape == (800,)


@pytest.fixture(scope="module")
def frontend_model():
    from keras_audio_cnn import frontend

    return frontend.build_frontend(8000, 4000)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(waveform=hnp.arrays(np.float32, (2, 4000),
                           elements=st.floats(-1, 1, width=32, allow_subnormal=True)))
def test_any_waveform_in_range_gives_a_finite_image(frontend_model, waveform):
    image = frontend_model(waveform, training=False).numpy()
    assert image.shape == (2, 128, 75, 3) and np.isfinite(image).all()
    assert image.min() >= -60.0 - 1e-3  # the floor: 10 log10(1e-6)
