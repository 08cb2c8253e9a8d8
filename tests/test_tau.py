import pytest

from tinyasc.data.tau import SCENES, FileNameError, device_group, parse_filename


def test_scenes_alphabetical_and_ten():
    assert list(SCENES) == sorted(SCENES) and len(SCENES) == 10


def test_parse_filename_fields():
    c = parse_filename("audio/street_pedestrian-lisbon-1175-44106-s3.wav")
    assert (c.scene, c.city, c.location, c.segment, c.device) == (
        "street_pedestrian",
        "lisbon",
        "1175",
        "44106",
        "s3",
    )
    assert c.identifier == "lisbon-1175"
    assert c.parallel_key == "street_pedestrian-lisbon-1175-44106"


@pytest.mark.parametrize(
    "name, needle",
    [
        ("audio/beach-lisbon-1-2-a.wav", "unknown scene"),
        ("audio/airport-lisbon-1-2-z9.wav", "unknown device"),
        ("audio/airport-atlantis-1-2-a.wav", "unknown city"),
        ("audio/airport-lisbon-x-2-a.wav", "numeric location"),
    ],
)
def test_parse_filename_errors_name_file_and_expectation(name, needle):
    with pytest.raises(FileNameError) as e:
        parse_filename(name)
    assert needle in str(e.value) and name in str(e.value)


def test_device_groups():
    assert [device_group(d) for d in ("a", "c", "s2", "s5")] == ["real", "real", "seen", "unseen"]
