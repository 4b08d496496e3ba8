"""Reading HTK SLF lattices: the layouts Kaldi's convert_slf.pl writes (words on links, or on
extra nodes) and SRILM's (words on nodes, <s>/</s>, base-10 scores) read as the same lattice;
every malformed text is a LatticeError naming its line; writing and reading again loses nothing."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.lattice import (
    Lattice,
    LatticeError,
    LatticeFormatError,
    LatticeStructureError,
    LatticeTooLarge,
    Link,
    Node,
    parse_slf,
    write_slf,
)
from tests.conftest import examples

FIXTURES = Path(__file__).resolve().parent.parent / "data" / "lattices"
LAYOUTS = ["kaldi-words-on-links.slf", "kaldi-words-on-nodes.slf", "srilm-base10.slf"]
# The fixtures' lattice: its paths as words, with their acoustic and language scores (natural log).
EXPECTED_PATHS = {
    ("the", "cat", "sat"): (-3592.0, -13.875),
    ("a", "cat", "sat"): (-3595.25, -15.0),
    ("the", "cat", "sat", "down"): (-4772.125, -17.625),
    ("a", "cat", "sat", "down"): (-4775.375, -18.75),
}


def summary(lattice: Lattice) -> dict:
    """Each path's words -> (acoustic, language, each word's (start, end) time)."""
    result = {}
    for path in lattice.paths():
        words = tuple(lattice.words_of(path))
        times = tuple((lattice.nodes[lattice.links[i].start].time, lattice.nodes[lattice.links[i].end].time)
                      for i in path if lattice.links[i].word is not None)
        result[words] = (math.fsum(lattice.links[i].acoustic for i in path), math.fsum(lattice.links[i].language for i in path), times)
    return result


@pytest.mark.parametrize("name", LAYOUTS)
def test_every_layout_reads_as_the_same_lattice(name):
    lattice = parse_slf((FIXTURES / name).read_text())
    assert lattice.utterance == "spk1-utt1" and lattice.has_times
    paths = summary(lattice)
    assert set(paths) == set(EXPECTED_PATHS)
    for words, (acoustic, language) in EXPECTED_PATHS.items():
        assert paths[words][0] == pytest.approx(acoustic, abs=1e-3)
        assert paths[words][1] == pytest.approx(language, abs=1e-3)
    # Each word spans the times of the nodes around it, whichever carries the word.
    assert paths[("the", "cat", "sat", "down")][2] == ((0.0, 0.25), (0.25, 0.61), (0.61, 0.98), (0.98, 1.30))


def test_the_header_is_kept_and_base_10_is_read_as_natural_logs():
    lattice = parse_slf((FIXTURES / "srilm-base10.slf").read_text())
    assert lattice.header["lmscale"] == "12.0" and lattice.header["base"] == "10"
    assert lattice.links[0].acoustic == pytest.approx(-352.755693 * math.log(10))
    natural = parse_slf((FIXTURES / "srilm-base10.slf").read_text().replace("base=10", "base=2.718281828459045"))
    assert natural.links[0].acoustic == pytest.approx(-352.755693)


def test_quoted_and_escaped_words_and_long_field_names():
    text = ('VERSION=1.0\nNODES=3 LINKS=2\nNODE=0 time=0.0\nI=1\nI=2\n'
            'LINK=0 START=0 END=1 WORD="new york" acoustic=-1 language=-2\n'
            'J=1 S=1 E=2 W=caf\\303\\251 a=-1\n')
    lattice = parse_slf(text)
    assert [link.word for link in lattice.links] == ["new york", "café"]
    assert lattice.links[0].language == -2.0 and lattice.links[1].language == 0.0
    assert not lattice.has_times


def test_a_lattice_without_node_lines_and_with_comments():
    lattice = parse_slf("# a comment\nVERSION=1.0\n\nN=2 L=1\nJ=0 S=0 E=1 W=word a=-3.5\n")
    assert lattice.start == 0 and lattice.end == 1 and lattice.words_of([0]) == ["word"]


def test_links_off_every_path_are_dropped_when_the_header_names_the_ends():
    text = "start=0\nend=2\nN=4 L=3\nJ=0 S=0 E=1 W=a\nJ=1 S=1 E=2 W=b\nJ=2 S=3 E=2 W=stray\n"
    lattice = parse_slf(text)
    assert [link.word for link in lattice.links] == ["a", "b"]


BAD = [
    ("", LatticeFormatError, None, "no size line"),
    ("VERSION=1.0\nI=0 t=0\n", LatticeFormatError, 2, "before the size line"),
    ("N=2 L=1\nJ=0 S=0 E=5\n", LatticeStructureError, 2, "E=5 is out of range"),
    ("N=2 L=1\nI=0\nI=7\nJ=0 S=0 E=1\n", LatticeStructureError, 3, "I=7 is out of range"),
    ("N=2 L=1\nJ=0 S=0 E=1 a=abc\n", LatticeFormatError, 2, "is not a number"),
    ("N=2 L=1\nJ=0 S=0 E=1 a=nan\n", LatticeFormatError, 2, "not a finite number"),
    ("N=2 L=1\nI=0 t=inf\n", LatticeFormatError, 2, "not a finite number"),
    ("N=2 L=2\nJ=0 S=0 E=1\nJ=0 S=0 E=1\n", LatticeStructureError, 3, "defined twice"),
    ("N=2 L=2\nJ=0 S=0 E=1\n", LatticeStructureError, 2, "link 1 is not defined"),
    ("N=3 L=2\nI=0\nI=1\nJ=0 S=0 E=1\nJ=1 S=1 E=2\n", LatticeStructureError, 5, "node 2 is not defined"),
    ("N=3 L=3\nJ=0 S=0 E=1\nJ=1 S=1 E=2\nJ=2 S=2 E=1\n", LatticeStructureError, 3, "cycle"),
    ("N=2 L=1\nJ=0 S=1 E=1\n", LatticeStructureError, 2, "no cycle"),
    ("N=3 L=2\nJ=0 S=0 E=2\nJ=1 S=1 E=2\n", LatticeStructureError, 1, "2 nodes have no incoming links"),
    ("N=3 L=2\nJ=0 S=0 E=1\nJ=1 S=0 E=2\n", LatticeStructureError, 1, "one end node"),
    ("base=1\nN=2 L=1\nJ=0 S=0 E=1\n", LatticeFormatError, 1, "base=1"),
    ("base=0\nN=2 L=1\nJ=0 S=0 E=1\n", LatticeFormatError, 1, "not supported"),
    ("SUBLAT=x\nN=2 L=1\n", LatticeFormatError, 1, "sub-lattices"),
    ("N=2 L=1\nJ=0 S=0 E=1 junk\n", LatticeFormatError, 2, "expected name=value"),
    ("N=2\n", LatticeFormatError, 1, "both N="),
    ("N=-2 L=1\n", LatticeFormatError, 1, "non-negative integer"),
    ("N=0 L=0\n", LatticeStructureError, 1, "at least one node"),
    ("N=2 L=1\nJ=0 E=1\n", LatticeFormatError, 2, "no S="),
    ("N=2 L=1\nJ=0 S=0 E=1\nN=2 L=1\n", LatticeFormatError, 3, "second size line"),
    ("N=2 L=1\nJ=0 S=0 E=1\nVERSION=1.0\n", LatticeFormatError, 3, "after the size line"),
    ("start=9\nN=2 L=1\nJ=0 S=0 E=1\n", LatticeStructureError, 1, "start=9 is out of range"),
    ("start=1\nend=0\nN=2 L=1\nJ=0 S=0 E=1\n", LatticeStructureError, None, "no path"),
]


@pytest.mark.parametrize(("text", "kind", "line", "words"), BAD)
def test_malformed_text_names_its_line(text, kind, line, words):
    with pytest.raises(kind, match=words) as caught:
        parse_slf(text)
    assert caught.value.line == line
    if line is not None:
        assert str(caught.value).startswith(f"line {line}: ")


def test_sizes_beyond_the_limits_are_refused_at_the_size_line():
    text = "VERSION=1.0\nN=5 L=9\n" + "".join(f"J={j} S=0 E=1\n" for j in range(9))
    with pytest.raises(LatticeTooLarge, match="N=5 nodes; the limit is 4") as caught:
        parse_slf(text, max_nodes=4)
    assert caught.value.line == 2
    with pytest.raises(LatticeTooLarge, match="L=9 links; the limit is 8"):
        parse_slf(text, max_nodes=5, max_links=8)


@settings(max_examples=examples(300), deadline=None)
@given(st.text(alphabet=st.sampled_from(list("NLIJSEWatl=0123456789 .-\n\"\\#é\u200b\x00")) | st.characters(), max_size=200))
def test_any_text_either_reads_or_raises_a_lattice_error(text):
    try:
        lattice = parse_slf(text, max_nodes=50, max_links=50)
    except LatticeError:
        return
    assert 0 <= lattice.start < len(lattice.nodes) and 0 <= lattice.end < len(lattice.nodes)
    lattice.topological_order()


@st.composite
def lattices(draw) -> Lattice:
    count = draw(st.integers(2, 7))
    words = st.sampled_from([None, "the", "cat", "new york", 'say "hi"', "back\\slash", "ünïcødé", "日本"])
    scores = st.floats(-1e4, 0, allow_nan=False)
    edges = [(i, i + 1) for i in range(count - 1)]
    edges += draw(st.lists(st.tuples(st.integers(0, count - 2), st.integers(1, count - 1)).filter(lambda e: e[0] < e[1]), max_size=6))
    links = [Link(s, e, draw(words), draw(scores), draw(scores), 0) for s, e in edges]
    times = draw(st.booleans())
    nodes = [Node(round(0.1 * i, 2) if times else None, None) for i in range(count)]
    return Lattice(nodes, links, 0, count - 1, "utt 1")


@settings(max_examples=examples(100), deadline=None)
@given(lattices())
def test_writing_and_reading_again_keeps_the_lattice(lattice):
    again = parse_slf(write_slf(lattice))
    assert again.utterance == lattice.utterance and (again.start, again.end) == (lattice.start, lattice.end)
    assert [n.time for n in again.nodes] == [n.time for n in lattice.nodes]
    assert [(k.start, k.end, k.word, k.acoustic, k.language) for k in again.links] == \
           [(k.start, k.end, k.word, k.acoustic, k.language) for k in lattice.links]
