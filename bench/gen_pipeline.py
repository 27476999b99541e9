"""Writes a valid pipeline of N steps for the validate / dry-run benchmark.

A realistic mix, every step with templates: a chain of `request` steps each reading the
previous step's output, with `needs`, `if`, `outputs`, var and env references, and every
tenth step an `exports.create` on a var. Nothing touches local files, so a dry-run sends
nothing and reads nothing. It speaks the documented flavour of the API, as the emulator the
other benchmarks use does. A step is about 320 bytes (the query as a flow mapping, a `name`
on every tenth), so 50,000 steps stay under the 16 MiB limit of a pipeline file.

usage: gen_pipeline.py N OUT.yaml
"""
import sys

n, out = int(sys.argv[1]), sys.argv[2]
lines = [
    "version: 1",
    f"name: generated-{n}",
    "api: { flavor: documented }",
    "vars:",
    "  project: prj_0001",
    "  dataset: ds_0001",
    "  page_size: 50",
    "defaults:",
    "  timeout: 60s",
    "  retry: { max_attempts: 3 }",
    "steps:",
]
for i in range(n):
    sid = f"s{i:05d}"
    if i == 0:
        lines += [
            f"  - id: {sid}",
            "    action: datasets.list",
            "    with:",
            '      limit: "{{ vars.page_size }}"',
        ]
    elif i % 10 == 0:
        lines += [
            f"  - id: {sid}",
            f"    name: Export {i}",
            "    action: exports.create",
            f"    needs: [s{i - 1:05d}]",
            "    with:",
            '      project_id: "{{ vars.project }}"',
            "      format: json",
            '      body: { note: "step ' + str(i) + ' of {{ pipeline.name }}" }',
        ]
    else:
        prev = f"s{i - 1:05d}"
        lines += [
            f"  - id: {sid}",
            "    action: request",
            f"    if: \"{{{{ steps.{prev}.status != 'failed' }}}}\"",
            "    with:",
            "      method: GET",
            f'      path: "/datasets/{{{{ vars.dataset }}}}/items"',
            f"      query: {{ after: \"{{{{ steps.{prev}.outputs.id | default('none') }}}}\","
            ' limit: "{{ vars.page_size }}" }',
            "    outputs:",
            f'      id: "{{{{ result.body.id | default(\'{sid}\') }}}}"',
        ]
lines += ["outputs:", f'  last: "{{{{ steps.s{n - 1:05d}.status }}}}"']
with open(out, "w") as f:
    f.write("\n".join(lines) + "\n")
