"""Word lattices in HTK's Standard Lattice Format (SLF): the text format that HTK, SRILM's
lattice-tool and Kaldi's `utils/convert_slf.pl` exchange.

    VERSION=1.0
    UTTERANCE=utt-001
    lmscale=12.00  wdpenalty=-10.00
    N=4  L=4
    I=0  t=0.00
    I=1  t=0.31  W=the
    ...
    J=0  S=0  E=1  a=-1234.5  l=-2.30
    J=1  S=1  E=2  W=cat  a=-987.1  l=-4.10

A word sits on a link (`W=` on the `J=` line) or on the node the link enters (`W=` on the
`I=` line: the word ending at that node); `!NULL`, `<s>` and `</s>` are no words. Scores are
logarithms in the base of the header's `base=` (natural logs when absent); they are read into
natural logs. Node times (`t=`, seconds) give each word its start and end.

`parse_slf` checks what later steps rely on (counts, references, one start and one end node,
no cycle, sizes within the limits given) and names the line of every problem.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

# Word labels that mark no word: HTK's null node, the sentence boundaries SRILM writes (the
# language model adds its own), HTK's sentence markers and an FST epsilon.
NON_WORDS = frozenset({"!NULL", "<s>", "</s>", "!SENT_START", "!SENT_END", "<eps>"})
NATURAL_BASE = math.e
# A field: name=value, the value bare or quoted (quotes let a word hold spaces; backslash escapes
# a character).
FIELD = re.compile(r"""([A-Za-z][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|\S*)""")
NODE_FIELDS = {"I": "I", "NODE": "I", "t": "t", "time": "t", "W": "W", "WORD": "W"}
LINK_FIELDS = {"J": "J", "LINK": "J", "S": "S", "START": "S", "E": "E", "END": "E", "W": "W", "WORD": "W",
               "a": "a", "acoustic": "a", "l": "l", "language": "l"}
SIZE_FIELDS = {"N": "N", "NODES": "N", "L": "L", "LINKS": "L"}


class LatticeError(ValueError):
    """An SLF text that cannot be read as a lattice; `line` is the 1-based line at fault (None
    for the lattice as a whole)."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(f"line {line}: {message}" if line is not None else message)
        self.line = line


class LatticeFormatError(LatticeError):
    """A line that is not SLF, or a field with a bad value."""


class LatticeStructureError(LatticeError):
    """Well-formed lines that do not make a lattice: references out of range, a cycle, several
    start or end nodes."""


class LatticeTooLarge(LatticeError):
    """More nodes or links than the limits allow."""


@dataclass(frozen=True)
class Node:
    time: float | None  # seconds, when the lattice gives times
    word: str | None  # the word ending here (words-on-nodes lattices); None: no word


@dataclass(frozen=True)
class Link:
    start: int
    end: int
    word: str | None  # None: no word (an epsilon link)
    acoustic: float  # natural log
    language: float  # natural log
    line: int  # where the link is defined


@dataclass
class Lattice:
    nodes: list[Node]
    links: list[Link]
    start: int
    end: int
    utterance: str | None = None
    header: dict[str, str] = field(default_factory=dict)  # the header's fields as written (lmscale, wdpenalty, ...)

    @property
    def has_times(self) -> bool:
        return bool(self.nodes) and all(node.time is not None for node in self.nodes)

    def outgoing(self) -> list[list[int]]:
        """Per node, the indices of the links that leave it."""
        result: list[list[int]] = [[] for _ in self.nodes]
        for index, link in enumerate(self.links):
            result[link.start].append(index)
        return result

    def topological_order(self) -> list[int]:
        """The nodes, each after every node with a link into it (the lattice has no cycle)."""
        order = _topological_order(len(self.nodes), self.links)
        if order is None:
            raise LatticeStructureError("the lattice has a cycle")
        return order

    def paths(self, limit: int | None = None) -> list[list[int]]:
        """Every path from start to end as its links' indices (for tests and small lattices);
        at most `limit` of them."""
        outgoing = self.outgoing()
        found: list[list[int]] = []
        stack: list[tuple[int, list[int]]] = [(self.start, [])]
        while stack and (limit is None or len(found) < limit):
            node, path = stack.pop()
            if node == self.end:
                found.append(path)
                continue
            for index in reversed(outgoing[node]):
                stack.append((self.links[index].end, path + [index]))
        return found

    def words_of(self, path: list[int]) -> list[str]:
        return [self.links[index].word for index in path if self.links[index].word is not None]


def _topological_order(count: int, links: list[Link]) -> list[int] | None:
    incoming = [0] * count
    outgoing: list[list[int]] = [[] for _ in range(count)]
    for link in links:
        incoming[link.end] += 1
        outgoing[link.start].append(link.end)
    ready = [node for node in range(count) if incoming[node] == 0]
    order: list[int] = []
    while ready:
        node = ready.pop()
        order.append(node)
        for successor in outgoing[node]:
            incoming[successor] -= 1
            if incoming[successor] == 0:
                ready.append(successor)
    return order if len(order) == count else None


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1]
    # HTK writes a character it must escape as \\ or as three octal digits (\ooo, a byte).
    if "\\" not in value:
        return value
    raw = bytearray()
    index = 0
    while index < len(value):
        character = value[index]
        if character == "\\" and re.fullmatch(r"[0-7]{3}", value[index + 1 : index + 4]):
            raw.append(int(value[index + 1 : index + 4], 8))
            index += 4
        elif character == "\\" and index + 1 < len(value):
            raw += value[index + 1].encode()
            index += 2
        else:
            raw += character.encode()
            index += 1
    return raw.decode("utf-8", "replace")


def _fields(text: str, number: int) -> list[tuple[str, str]]:
    fields, position = [], 0
    while position < len(text):
        if text[position].isspace():
            position += 1
            continue
        match = FIELD.match(text, position)
        if match is None:
            snippet = text[position : position + 20]
            raise LatticeFormatError(f"expected name=value, found {snippet!r}", number)
        fields.append((match.group(1), _unquote(match.group(2))))
        position = match.end()
    return fields


def _number(value: str, name: str, number: int) -> float:
    try:
        result = float(value)
    except ValueError:
        raise LatticeFormatError(f"{name}={value!r} is not a number", number) from None
    if not math.isfinite(result):
        raise LatticeFormatError(f"{name}={value} is not a finite number", number)
    return result


def _integer(value: str, name: str, number: int) -> int:
    if not re.fullmatch(r"\+?[0-9]{1,18}", value):
        raise LatticeFormatError(f"{name}={value!r} is not a non-negative integer", number)
    return int(value)


def _word(value: str) -> str | None:
    return None if value in NON_WORDS or value == "" else value


@dataclass
class _LinkFields:
    index: int
    start: int
    end: int
    word: str | None
    has_word: bool
    acoustic: float
    language: float
    line: int


def parse_slf(text: str, max_nodes: int | None = None, max_links: int | None = None) -> Lattice:
    """Read one lattice. Raises a `LatticeError` naming the line at fault; a size line beyond
    `max_nodes` or `max_links` is refused before the rest is read."""
    header: dict[str, str] = {}
    header_lines: dict[str, int] = {}
    sizes: tuple[int, int] | None = None
    size_line = 0
    nodes: dict[int, Node] = {}
    node_lines: dict[int, int] = {}
    links: dict[int, _LinkFields] = {}
    scale = 1.0
    last_line = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        last_line = number
        fields = _fields(line, number)
        first = fields[0][0]
        if first in ("I", "NODE", "J", "LINK"):
            if sizes is None:
                raise LatticeFormatError("a node or link before the size line (N=... L=...)", number)
            if first in ("I", "NODE"):
                index, node = _node(fields, sizes[0], number)
                if index in nodes:
                    raise LatticeStructureError(f"node {index} is defined twice (first on line {node_lines[index]})", number)
                nodes[index], node_lines[index] = node, number
            else:
                link = _link(fields, sizes, scale, number)
                if link.index in links:
                    raise LatticeStructureError(f"link {link.index} is defined twice (first on line {links[link.index].line})", number)
                links[link.index] = link
        elif first in SIZE_FIELDS:
            if sizes is not None:
                raise LatticeFormatError(f"a second size line (the first is line {size_line}); give one lattice per text", number)
            sizes = _sizes(fields, number, max_nodes, max_links)
            size_line = number
        else:
            if sizes is not None:
                raise LatticeFormatError(f"header field {first}= after the size line; give one lattice per text", number)
            for name, value in fields:
                if name == "SUBLAT":
                    raise LatticeFormatError("sub-lattices (SUBLAT=) are not supported", number)
                header[name] = value
                header_lines[name] = number
            if "base" in dict(fields):
                scale = _log_scale(dict(fields)["base"], number)
    if sizes is None:
        raise LatticeFormatError("no size line (N=<nodes> L=<links>)", last_line or None)
    node_count, link_count = sizes
    missing = [i for i in range(node_count) if i not in nodes]
    if len(nodes) < node_count and len(nodes) > 0:
        raise LatticeStructureError(f"{node_count} nodes declared on line {size_line} but node {missing[0]} is not defined "
                                    f"({len(nodes)} are)", last_line)
    if not nodes:
        # A lattice may give no node lines at all when its nodes carry nothing (words on links, no times).
        nodes = {i: Node(None, None) for i in range(node_count)}
    if len(links) != link_count:
        absent = next(i for i in range(link_count) if i not in links)
        raise LatticeStructureError(f"{link_count} links declared on line {size_line} but link {absent} is not defined "
                                    f"({len(links)} are)", last_line)
    node_list = [nodes[i] for i in range(node_count)]
    link_list = [Link(f.start, f.end, f.word if f.has_word else node_list[f.end].word, f.acoustic, f.language, f.line)
                 for f in (links[i] for i in range(link_count))]
    start, end = _start_and_end(node_list, link_list, header, header_lines, size_line)
    return _trimmed(Lattice(node_list, link_list, start, end, header.get("UTTERANCE") or header.get("U"), header))


def _log_scale(value: str, number: int) -> float:
    """What turns a score in the lattice's log base into a natural log."""
    base = _number(value, "base", number)
    if base <= 0 or base == 1:
        raise LatticeFormatError(f"base={value}: scores must be logarithms in a base above 0 and other than 1 "
                                 f"(base=0, plain probabilities, is not supported)", number)
    return math.log(base)


def _sizes(fields: list[tuple[str, str]], number: int, max_nodes: int | None, max_links: int | None) -> tuple[int, int]:
    values: dict[str, int] = {}
    for name, value in fields:
        if name not in SIZE_FIELDS:
            raise LatticeFormatError(f"unexpected field {name}= on the size line", number)
        values[SIZE_FIELDS[name]] = _integer(value, name, number)
    if "N" not in values or "L" not in values:
        raise LatticeFormatError("the size line needs both N=<nodes> and L=<links>", number)
    if values["N"] < 1:
        raise LatticeStructureError("a lattice needs at least one node", number)
    if max_nodes is not None and values["N"] > max_nodes:
        raise LatticeTooLarge(f"N={values['N']} nodes; the limit is {max_nodes}", number)
    if max_links is not None and values["L"] > max_links:
        raise LatticeTooLarge(f"L={values['L']} links; the limit is {max_links}", number)
    return values["N"], values["L"]


def _node(fields: list[tuple[str, str]], count: int, number: int) -> tuple[int, Node]:
    values = {NODE_FIELDS[name]: value for name, value in fields if name in NODE_FIELDS}
    index = _integer(values["I"], "I", number)
    if index >= count:
        raise LatticeStructureError(f"node I={index} is out of range: N={count} allows 0 to {count - 1}", number)
    time = _number(values["t"], "t", number) if "t" in values else None
    return index, Node(time, _word(values["W"]) if "W" in values else None)


def _link(fields: list[tuple[str, str]], sizes: tuple[int, int], scale: float, number: int) -> _LinkFields:
    node_count, link_count = sizes
    values = {LINK_FIELDS[name]: value for name, value in fields if name in LINK_FIELDS}
    index = _integer(values["J"], "J", number)
    if index >= link_count:
        raise LatticeStructureError(f"link J={index} is out of range: L={link_count} allows 0 to {link_count - 1}", number)
    ends = []
    for name in ("S", "E"):
        if name not in values:
            raise LatticeFormatError(f"link J={index} has no {name}= node", number)
        node = _integer(values[name], name, number)
        if node >= node_count:
            raise LatticeStructureError(f"link J={index}: {name}={node} is out of range: N={node_count} allows 0 to "
                                        f"{node_count - 1}", number)
        ends.append(node)
    if ends[0] == ends[1]:
        raise LatticeStructureError(f"link J={index} leaves and enters node {ends[0]}: a lattice has no cycle", number)
    acoustic = _number(values["a"], "a", number) * scale if "a" in values else 0.0
    language = _number(values["l"], "l", number) * scale if "l" in values else 0.0
    return _LinkFields(index, ends[0], ends[1], _word(values.get("W", "")), "W" in values, acoustic, language, number)


def _start_and_end(nodes: list[Node], links: list[Link], header: dict[str, str], header_lines: dict[str, int],
                   size_line: int) -> tuple[int, int]:
    order = _topological_order(len(nodes), links)
    if order is None:
        on_cycle = _link_on_cycle(len(nodes), links)
        raise LatticeStructureError(f"the links form a cycle (link S={on_cycle.start} E={on_cycle.end} is on one); "
                                    f"a lattice is acyclic", on_cycle.line)
    has_incoming, has_outgoing = set(), set()
    for link in links:
        has_incoming.add(link.end)
        has_outgoing.add(link.start)
    chosen = []
    for name, lacking, what in (("start", has_incoming, "no incoming"), ("end", has_outgoing, "no outgoing")):
        if name in header:
            node = _integer(header[name], name, header_lines[name])
            if node >= len(nodes):
                raise LatticeStructureError(f"{name}={node} is out of range: N={len(nodes)} allows 0 to {len(nodes) - 1}",
                                            header_lines[name])
            chosen.append(node)
            continue
        candidates = [n for n in range(len(nodes)) if n not in lacking]
        if len(candidates) != 1:
            shown = ", ".join(map(str, candidates[:5])) + (", ..." if len(candidates) > 5 else "")
            raise LatticeStructureError(f"{len(candidates)} nodes have {what} links ({shown}); a lattice has one {name} "
                                        f"node (or names it with {name}=)", size_line)
        chosen.append(candidates[0])
    return chosen[0], chosen[1]


def _link_on_cycle(count: int, links: list[Link]) -> Link:
    """A link of some cycle (for the message): the links Kahn's algorithm cannot remove lie on
    cycles or after them; the first by line whose start is left is on one or leads from one."""
    incoming = [0] * count
    outgoing: list[list[int]] = [[] for _ in range(count)]
    for link in links:
        incoming[link.end] += 1
        outgoing[link.start].append(link.end)
    ready = [node for node in range(count) if incoming[node] == 0]
    removed = set(ready)
    while ready:
        node = ready.pop()
        for successor in outgoing[node]:
            incoming[successor] -= 1
            if incoming[successor] == 0:
                removed.add(successor)
                ready.append(successor)
    # A node left with links still coming in from other left nodes: walking back along them
    # from any left node must come round to a node already seen, on a cycle.
    into: dict[int, Link] = {}
    for link in links:
        if link.start not in removed and link.end not in removed:
            into.setdefault(link.end, link)
    node = next(iter(into))
    seen: dict[int, Link] = {}
    while node not in seen:
        seen[node] = into[node]
        node = into[node].start
    cycle = []
    start = node
    while True:
        cycle.append(seen[node])
        node = seen[node].start
        if node == start:
            break
    return min(cycle, key=lambda link: link.line)


def _trimmed(lattice: Lattice) -> Lattice:
    """The lattice without links off every start-to-end path (only possible when the header
    names the start or end node); refuses a lattice with no such path."""
    forward = _reachable(lattice.start, [(link.start, link.end) for link in lattice.links], len(lattice.nodes))
    backward = _reachable(lattice.end, [(link.end, link.start) for link in lattice.links], len(lattice.nodes))
    if lattice.end not in forward:
        raise LatticeStructureError(f"no path leads from the start node {lattice.start} to the end node {lattice.end}")
    kept = [link for link in lattice.links if link.start in forward and link.end in backward]
    if len(kept) != len(lattice.links):
        lattice.links = kept
    return lattice


def _reachable(origin: int, edges: list[tuple[int, int]], count: int) -> set[int]:
    adjacent: list[list[int]] = [[] for _ in range(count)]
    for source, target in edges:
        adjacent[source].append(target)
    seen, stack = {origin}, [origin]
    while stack:
        for successor in adjacent[stack.pop()]:
            if successor not in seen:
                seen.add(successor)
                stack.append(successor)
    return seen


def _format_value(value: str) -> str:
    if value and not any(c.isspace() or c in "\"'\\" for c in value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_slf(lattice: Lattice, words_on_nodes: bool = False) -> str:
    """The lattice as SLF text (natural-log scores), words on links, or on nodes when every
    link into a node carries the same word."""
    lines = ["VERSION=1.0"]
    if lattice.utterance:
        lines.append(f"UTTERANCE={_format_value(lattice.utterance)}")
    lines.append(f"N={len(lattice.nodes)}\tL={len(lattice.links)}")
    node_words: dict[int, str | None] = {}
    if words_on_nodes:
        for link in lattice.links:
            if node_words.setdefault(link.end, link.word) != link.word:
                raise ValueError(f"node {link.end} is entered by links with different words; write words on links")
    for index, node in enumerate(lattice.nodes):
        parts = [f"I={index}"]
        if node.time is not None:
            parts.append(f"t={node.time:.2f}")
        if words_on_nodes:
            parts.append(f"W={_format_value(node_words.get(index) or '!NULL')}")
        lines.append("\t".join(parts))
    for index, link in enumerate(lattice.links):
        parts = [f"J={index}", f"S={link.start}", f"E={link.end}"]
        if not words_on_nodes:
            parts.append(f"W={_format_value(link.word or '!NULL')}")
        parts += [f"a={link.acoustic!r}", f"l={link.language!r}"]
        lines.append("\t".join(parts))
    return "\n".join(lines) + "\n"
