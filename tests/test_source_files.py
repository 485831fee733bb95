"""A local source reads exactly the file it names: not the files whose names end like it."""

from __future__ import annotations

import json

import pytest

from aurora_m.data.intake import exact_name_pattern, source_reader
from aurora_m.source_spec import SourceSpec


@pytest.mark.parametrize("name", ["de.jsonl", "wiki-en.jsonl", "a[1].jsonl", "x*y?.json", "part.jsonl.gz"])
def test_the_pattern_matches_the_name_alone(name):
    from fnmatch import fnmatchcase
    from glob import has_magic

    pattern = exact_name_pattern(name)
    assert has_magic(pattern)  # datatrove prefixes "*" to a pattern without a wildcard
    assert fnmatchcase(name, pattern)
    for other in (f"co{name}", f"{name}x", f"x{name}", name[:-1] + "?"):
        assert not fnmatchcase(other, pattern), other


def test_a_source_reads_its_file_and_not_the_one_whose_name_ends_like_it(tmp_path):
    (tmp_path / "de.jsonl").write_text("".join(json.dumps({"text": f"Deutsch {i}"}) + "\n" for i in range(3)))
    (tmp_path / "code.jsonl").write_text("".join(json.dumps({"text": f"def f{i}(): pass"}) + "\n" for i in range(5)))
    spec = SourceSpec.from_config({"name": "de", "path": str(tmp_path / "de.jsonl"), "language": "en"})
    reader = source_reader(spec)
    texts = [doc.text for doc in reader.run(None, rank=0, world_size=1)]
    assert texts == ["Deutsch 0", "Deutsch 1", "Deutsch 2"]
