"""YAML read safely and with bounds: what a small file may expand to.

`yaml.safe_load` constructs only plain values, but an alias (`*a`) repeats a whole subtree
by reference, so a few hundred bytes of nested aliases describe a billion values, and
whoever walks them (validation, a dump, an error message quoting the value) runs out of
memory or time. `safe_load` here composes the document first, counts the values it
expands to (each alias counted as the subtree it repeats) and refuses more than
`MAX_VALUES`, and refuses nesting deeper than the parser can follow, before anything is
constructed; a configuration of this product holds a few hundred values.
"""
from __future__ import annotations

import yaml

#: values a document may expand to, aliases counted as what they repeat
MAX_VALUES = 100_000


class YamlTooLarge(yaml.YAMLError):
    """A document that expands to more values than allowed, or nests too deeply."""


def _expanded_size(root: yaml.Node, limit: int) -> int:
    """The number of values `root` expands to (an alias's subtree counted at every use),
    computed once per distinct node; raises YamlTooLarge as soon as it exceeds `limit`."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        if isinstance(node, yaml.ScalarNode):
            kids: list[yaml.Node] = []
        elif isinstance(node, yaml.SequenceNode):
            kids = list(node.value)
        else:
            kids = [x for pair in node.value for x in pair]
        if not children_done:
            stack.append((node, True))
            stack.extend((k, False) for k in kids if id(k) not in sizes)
            continue
        total = 1 + sum(sizes[id(k)] for k in kids)
        if total > limit:
            raise YamlTooLarge(f"expands to more than {limit:,} values (aliases repeat what they name)")
        sizes[id(node)] = total
    return sizes[id(root)]


class BoundedSafeLoader(yaml.SafeLoader):
    """SafeLoader that checks a document's expanded size before constructing it."""

    max_values = MAX_VALUES

    def compose_document(self):
        node = super().compose_document()
        if node is not None:
            _expanded_size(node, self.max_values)
        return node


def safe_load(text: str, loader: type[BoundedSafeLoader] = BoundedSafeLoader):
    """`yaml.safe_load` with the bounds above; errors are `yaml.YAMLError` (YamlTooLarge for
    a document too large or too deep)."""
    try:
        return yaml.load(text, Loader=loader)
    except RecursionError:
        raise YamlTooLarge("nests too deeply") from None
