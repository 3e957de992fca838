"""The job contract's feed-forward kinds and its one source of parameter limits."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

from stylebot.jobs import spec as contract
from stylebot.jobs.spec import JobKind, JobParams, JobSpec, parse_gallery, sheet_choice


def _spec(kind: str, **fields: object) -> JobSpec:
    return JobSpec(
        job_id=uuid.uuid4().hex, owner="chat:1", kind=kind, content_key="in/chat_1-x/c.jpg", **fields
    )  # type: ignore[arg-type]


def test_parse_gallery_accepts_an_index_or_a_blend() -> None:
    assert parse_gallery("7") == {7: 1.0}
    assert parse_gallery("3:0.5, 12:0.5") == {3: 0.5, 12: 0.5}
    assert parse_gallery("3:1,3:1") == {3: 2.0}


@pytest.mark.parametrize("text", ["26", "-1", "x", "3:", "3:0", "3:-1", "1,2,3,4,5,6", ""])
def test_parse_gallery_refuses_what_is_not_a_blend(text: str) -> None:
    with pytest.raises(ValueError, match="gallery"):
        parse_gallery(text)


def test_gallery_and_sheet_jobs_take_only_their_own_fields() -> None:
    job = _spec("gallery", gallery={"3": 0.5, "12": 0.5})
    assert job.gallery == {3: 0.5, 12: 0.5} and job.kind.fast_lane
    assert JobSpec.model_validate_json(job.model_dump_json()) == job  # survives the wire
    assert _spec("sheet").kind is JobKind.sheet
    for kind, fields in [
        ("gallery", {}),
        ("gallery", {"gallery": {"30": 1}}),
        ("gallery", {"gallery": {"1": 1}, "style_keys": ["in/chat_1-x/s.jpg"]}),
        ("sheet", {"gallery": {"1": 1}}),
        ("sheet", {"model": "style_monet"}),
        ("nst", {"style_keys": ["in/chat_1-x/s.jpg"], "gallery": {"1": 1}}),
        ("cyclegan", {"model": "style_monet", "gallery": {"1": 1}}),
    ]:
        with pytest.raises(ValidationError):
            _spec(kind, **fields)


def test_instant_is_a_preset_of_nst_jobs_and_not_the_fast_lane_kind() -> None:
    job = _spec("nst", style_keys=["in/chat_1-x/s.jpg"], params=JobParams(preset="instant"))
    assert job.params.preset == "instant" and not job.kind.fast_lane


def test_limits_have_one_source() -> None:
    fields = JobParams.model_fields
    size = {type(m).__name__: m for m in fields["size"].metadata}
    assert (size["Ge"].ge, size["Le"].le) == (contract.MIN_SIZE, contract.MAX_SIZE)
    strength = {type(m).__name__: m for m in fields["strength"].metadata}
    assert (strength["Ge"].ge, strength["Le"].le) == (contract.MIN_STRENGTH, contract.MAX_STRENGTH)


def test_sheet_numbers_map_back_to_styles() -> None:
    assert sheet_choice(0) == (JobKind.gallery, 0) and sheet_choice(25) == (JobKind.gallery, 25)
    assert sheet_choice(26) == (JobKind.cyclegan, "style_monet")
    assert sheet_choice(31) == (JobKind.cyclegan, "winter2summer_yosemite")
    with pytest.raises(ValueError):
        sheet_choice(32)
