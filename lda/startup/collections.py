"""Named tuples for the delivery path, without collections.

`collections.namedtuple` would cost a delivery importing collections
(keyword, operator, reprlib, heapq come with it) and exec'ing each class's
source (bench/profiles/startup-figures.txt).  record() builds the part of
it that lda uses: positional arguments with trailing defaults, fields by
name, unpacking, equality and hashing as a tuple, a readable repr,
_asdict() and _fields.
"""

import sys


def record(typename, field_names, defaults=(), doc=None):
    """A tuple subclass named typename, with the fields field_names (one
    string, space-separated); defaults apply to the last fields."""
    fields = tuple(field_names.split())
    defaults = tuple(defaults)
    required = len(fields) - len(defaults)

    def __new__(cls, *values):
        if not required <= len(values) <= len(fields):
            raise TypeError(f"{typename}() takes {required} to {len(fields)} "
                            f"arguments ({len(values)} given)")
        return tuple.__new__(cls, values + defaults[len(values) - required:])

    def __repr__(self):
        named = ", ".join(f"{name}={value!r}" for name, value in zip(fields, self))
        return f"{type(self).__name__}({named})"

    namespace = {
        "__slots__": (),
        "__doc__": doc or f"{typename}({', '.join(fields)})",
        "__module__": sys._getframe(1).f_globals.get("__name__"),
        "__new__": __new__,
        "__repr__": __repr__,
        "__getnewargs__": lambda self: tuple(self),
        "_asdict": lambda self: dict(zip(fields, self)),
        "_fields": fields,
    }
    for index, name in enumerate(fields):
        namespace[name] = property(lambda self, index=index: self[index],
                                   doc=f"Field {index}: {name}")
    return type(typename, (tuple,), namespace)
