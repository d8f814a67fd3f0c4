#!/usr/bin/env python3
"""Checks the rule of src/'s folders (docs/architecture.md, "Folders").

A file may include headers of its own folder and of the folders below it:

    src/llmext.c  (module start: any folder)
    sql/ > queue/ > call/ > store/ > net/ > providers/ > core/

src/llmext.h (settings and SQLSTATEs) is for the server folders; core/ and
providers/ are pure: they include neither it nor any PostgreSQL header.  No
circle of modules anywhere: a module is a .c file with its .h, and uses the
modules whose headers it (or its header) includes.  A header without a .c of
its name (queue_private.h) belongs to the files that include it; llmext.c,
which starts every module and defines the settings llmext.h declares, is
left out of the circle check.
Prints every breach and exits 1 if there is one.
"""
import glob
import os
import re
import sys

ORDER = ['core', 'providers', 'net', 'store', 'call', 'queue', 'sql']
PURE = {'core', 'providers'}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'src')
problems = []
uses = {}                               # module -> modules it includes


def module(path):
    return os.path.splitext(os.path.relpath(path, root))[0]


for path in sorted(glob.glob(os.path.join(root, '*', '*.[ch]')) +
                   glob.glob(os.path.join(root, '*.[ch]'))):
    rel = os.path.relpath(path, root)
    folder = rel.split(os.sep)[0] if os.sep in rel else None
    for header in INCLUDE.findall(open(path).read()):
        target = os.path.join(root, header)
        if not os.path.exists(target):
            # a server header: pure folders may not have one
            if folder in PURE:
                problems.append('%s: pure code includes "%s"' % (rel, header))
            continue
        uses.setdefault(module(path), set()).add(module(target))
        if folder is None:
            continue                    # src/llmext.[ch] sit above every folder
        if header == 'llmext.h':
            if folder in PURE:
                problems.append('%s: pure code includes "llmext.h"' % rel)
            continue
        to = header.split('/')[0]
        if to not in ORDER:
            problems.append('%s: includes "%s", outside the folders' % (rel, header))
        elif ORDER.index(to) > ORDER.index(folder):
            problems.append('%s: %s/ may not use %s/ (above it): "%s"' % (rel, folder, to, header))

modules = {module(p) for p in glob.glob(os.path.join(root, '**', '*.c'), recursive=True)}
modules.discard('llmext')
graph = {m: sorted(t for t in uses.get(m, ()) if t in modules and t != m) for m in modules}
state = {}                              # 1: on the current path, 2: done


def visit(m, path):
    state[m] = 1
    for t in graph[m]:
        if state.get(t) == 1:
            problems.append('circle: ' + ' -> '.join(path[path.index(t):] + [m, t]))
        elif t not in state:
            visit(t, path + [m])
    state[m] = 2


for m in sorted(modules):
    if m not in state:
        visit(m, [])

for p in problems:
    print('check_layers: ' + p)
print('check_layers: %d files, %d breaches' % (len(glob.glob(os.path.join(root, '**', '*.[ch]'), recursive=True)),
                                               len(problems)))
sys.exit(1 if problems else 0)
