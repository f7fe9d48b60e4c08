"""The commands behind `embedkeeper <command>`: each module's cmd_<name>(args, config) does one
command's work and prints its result on stdout; `run` hands over to the service.

cli.py imports a command's module only when that command runs, so a module here may import the
driver and the sync pass at its top without slowing `embedkeeper --help`.
"""

from __future__ import annotations
