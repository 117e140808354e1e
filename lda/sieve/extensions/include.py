"""The include extension (RFC 6609): include, return, global.

Where scripts come from, as Pigeonhole's places (Envelope.options, filled
by the delivery from lda.toml):
  :personal (the default)  NAME.sieve in options["sieve_dir"]: sieve/ in a
                           managed mailbox (where `lda sieve install` keeps
                           them), the sieve_dir key (~/sieve) in per-user mode
  :global                  NAME.sieve in options["sieve_global_dir"]
An included script is compiled with load_script, so it has its own entry in
options["sieve_cache_dir"] keyed by its own file stamp.

Includes are resolved when the include command runs, not when the including
script is compiled (Pigeonhole compiles them into the main script's binary).
RFC 6609 section 3.1 asks that a missing script or a cycle be an error at
execution, never at upload; and the compiled cache of the including script
is keyed by its own file only, so a script that included another at compile
time would keep running the old text after that other one changed.  The
result is the same as Pigeonhole's for a delivery: Pigeonhole cannot compile
the main script and keeps the message; here the include is a runtime error,
which drops every action and keeps the message.  An include that does not
run (in an if branch not taken) is no error here; Pigeonhole refuses it.

Decisions:
- A script name is refused (at compile time, with its line and column) by
  the rule a stored script's name follows (script.bad_name, stored): empty,
  longer than a file name takes, with "/" or a control character (RFC 5804
  section 1.6).  A name is one file in one directory, the suffix appended:
  ".x" is the .x.sieve ManageSieve stores, as Pigeonhole includes it, and
  ".." the file "...sieve", never the parent.
- The file may be a symlink only to a file in the same directory tree; one
  writable by group or others is refused, as a delivery refuses its main
  script (both are runtime errors: implicit keep).
- :global with no sieve_global_dir (or :personal with no sieve_dir) is an
  error even with :optional, as in Pigeonhole ("location unavailable").
- :once and cycles go by the file's real path; the main script counts as
  included when it is a file.  Pigeonhole's include limits apply per run:
  MAX_NESTING_DEPTH levels below the main script, and MAX_INCLUDES include
  commands executed in all (Pigeonhole counts distinct scripts and bounds
  time instead; a count of runs also bounds a tree that includes one
  script many times over).
- `global` after a local `set` of the same name is a runtime error (RFC
  6609 section 3.4.1 allows either time; Pigeonhole refuses it at compile
  time); `global` takes effect when it runs, so one inside an if block
  holds after the block too (Pigeonhole scopes it to the block).
"""

import os
import stat

from ..interpreter import RuntimeFailure, Stop
from ..script import SUFFIX, bad_name, load_script
from ..spec import STRING, STRINGS, Spec, tag

CAPABILITIES = ("include",)
COMMANDS = {
    "include": Spec("include", {":personal": tag("location", "personal"),
                                ":global": tag("location", "global"),
                                ":once": tag("once"), ":optional": tag("optional")},
                    [("name", STRING)], {"location": "personal", "once": False,
                                         "optional": False}),
    "return": Spec("include"),
    "global": Spec("include", positional=[("names", STRINGS)]),
}
TESTS = {}
TAGS = {}

MAX_NESTING_DEPTH = 10  # Pigeonhole's sieve_include_max_nesting_depth
MAX_INCLUDES = 255      # includes run per delivery (Pigeonhole's max_includes: scripts)
DIRECTORY_OPTION = {"personal": "sieve_dir", "global": "sieve_global_dir"}
NAMESPACE = "global."  # RFC 6609 section 3.4.2


class Return(Stop):
    """The return command: ends the script it is in.  In the main script
    the interpreter takes it for stop (RFC 6609 section 3.3)."""


class ScriptVariables:
    """The variables of one script that requires include (RFC 6609 section
    3.4): its own, and those it declared with `global` or names as
    "global.NAME", which live in `shared`, one dict for every script of the
    run.  Execution.variables is one: read with .get(), written by item."""

    __slots__ = ("own", "shared", "declared")

    def __init__(self, shared=None):
        self.own = {}
        self.shared = {} if shared is None else shared
        self.declared = set()

    def _where(self, name):
        if name.startswith(NAMESPACE):
            return self.shared, name[len(NAMESPACE):]
        return (self.shared if name in self.declared else self.own), name

    def get(self, name, default=None):
        table, key = self._where(name)
        return table.get(key, default)

    def __getitem__(self, name):
        table, key = self._where(name)
        return table[key]

    def __setitem__(self, name, value):
        table, key = self._where(name)
        table[key] = value

    def __contains__(self, name):
        table, key = self._where(name)
        return key in table


class Includes:
    """What one run knows of its includes: the real paths included so far
    (for :once), the chain of scripts now running (for cycles), how deep
    the included script now running is, and how many includes ran."""

    def __init__(self, execution):
        self.included = set()
        self.chain = []
        self.depth = 0
        self.count = 0
        self.globals = getattr(execution.variables, "shared", None)
        main = execution.script.name
        if os.path.isabs(main):
            real = os.path.realpath(main)
            self.included.add(real)
            self.chain.append(real)


# --- compile time --------------------------------------------------------------


def check_include(validator, node, built):
    """The name is a constant (RFC 6609 section 3.2: variables are not
    expanded in it), so it is checked here, where the error has a place."""
    problem = bad_name(built["name"], stored=True)
    if problem:
        arg = node.args[-1]
        validator.error(arg.line, arg.col, f"include: bad script name {built['name']!r}: "
                                           f"{problem}")


def check_global(validator, node, built):
    """RFC 6609 section 3.4.1: needs variables too; plain identifiers only."""
    from ..grammar import valid_identifier

    if "variables" not in validator.requires:
        validator.error(node.line, node.col, 'global needs require "variables" as well')
    arg = node.args[-1]
    for name, (line, col) in zip(built["names"], arg.positions):
        if not valid_identifier(name):
            validator.error(line, col, f'global: invalid variable name "{name}"')
    built["names"] = [name.lower() for name in built["names"]]


# --- run time ------------------------------------------------------------------


def cmd_return(execution, node):
    raise Return


def cmd_global(execution, node):
    variables = execution.variables
    for name in node["names"]:
        if name in variables.own:
            execution.fail(f'global "{name}": already set as a variable of this script '
                           "(RFC 6609 section 3.4.1)")
        variables.declared.add(name)


def cmd_include(execution, node):
    includes = getattr(execution, "includes", None)
    if includes is None:  # the run's first include
        includes = execution.includes = Includes(execution)
    name, location = node["name"], node["location"]
    path = locate(execution, location, name)
    if path is None:
        if node["optional"]:
            return execution.log.append(f'include: {location} script "{name}" '
                                        "not found, :optional: skipped")
        execution.fail(f'include: {location} script "{name}" does not exist')
    if node["once"] and path in includes.included:
        return
    if path in includes.chain:
        execution.fail(f'include: {location} script "{name}" includes itself (a cycle)')
    if includes.depth >= MAX_NESTING_DEPTH:
        execution.fail(f"include: nested more than {MAX_NESTING_DEPTH} levels deep")
    includes.count += 1
    if includes.count > MAX_INCLUDES:
        execution.fail(f"include: more than {MAX_INCLUDES} includes")
    script = compiled(execution, path, name)
    if script is None:  # removed since locate() saw it
        execution.fail(f'include: {location} script "{name}" does not exist')
    includes.included.add(path)
    run_included(execution, includes, script, path, f'include "{name}"')


def locate(execution, location, name):
    """The real path of the script, None if there is none; a runtime error
    for a name or a file that must not be read."""
    directory = execution.envelope.options.get(DIRECTORY_OPTION[location])
    if not directory:
        execution.fail(f"include: no {location} script directory "
                       f"({DIRECTORY_OPTION[location]} is not set)")
    problem = bad_name(name, stored=True)  # at compile time; again for a hand-made AST
    if problem:
        execution.fail(f"include: bad script name {name!r}: {problem}")
    root = os.path.realpath(directory)
    path = os.path.realpath(os.path.join(root, name + SUFFIX))
    if os.path.commonpath([root, path]) != root:
        execution.fail(f'include: "{name}" leads out of {root} (to {path}): not read')
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        execution.fail(f"include: cannot read {path}: {e.strerror}")
    if not stat.S_ISREG(st.st_mode):
        execution.fail(f"include: {path} is not a file")
    if st.st_mode & 0o022:
        execution.fail(f"include: {path} is writable by group or others: not run")
    return path


def compiled(execution, path, name):
    from ..errors import SieveError

    try:
        return load_script(path, execution.envelope.options.get("sieve_cache_dir") or None)
    except SieveError as e:
        lines = e.lines(path)
        more = f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""
        execution.fail(f'include "{name}": {lines[0]}{more}')


def run_included(execution, includes, script, path, what):
    """Run `script` in `execution` with its own variables and match
    variables (RFC 6609 section 3.4); its actions join the run's.  return
    ends it; stop and runtime errors go on up, an error naming the include
    it came through."""
    saved = (execution.script, execution.use_variables, execution.variables,
             execution.match_values, execution.line)
    execution.script = script
    execution.use_variables = "variables" in script.requires
    if "include" in script.requires:
        execution.variables = ScriptVariables(includes.globals)
    else:
        execution.variables = {}
    execution.match_values = []
    includes.chain.append(path)
    includes.depth += 1
    try:
        execution.block(script.commands)
    except Return:
        pass
    except RuntimeFailure as e:
        raise RuntimeFailure(saved[-1], f"{what}: line {e.line}: {e.message}") from None
    finally:
        includes.depth -= 1
        includes.chain.pop()
        (execution.script, execution.use_variables, execution.variables,
         execution.match_values, execution.line) = saved
