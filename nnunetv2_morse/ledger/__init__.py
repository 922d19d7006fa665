"""The evidence ledger: studies defined in ``results/<study>/study.json``, run resumably through nnU-Net's own
commands (``nnUNetv2_morse_study``), recorded per finished (trainer, seed, fold) as small JSON files, and rendered
into ``RESULTS.md`` from those files alone (``nnUNetv2_morse_results``).

``definition`` reads and validates study.json, ``datasets`` builds a study's dataset, ``records`` writes the ledger's
files, ``run`` runs a study, ``statistics`` holds the paired statistics, ``render`` writes RESULTS.md and its
figures, ``gpu`` measures everything that needs CUDA with one command. See results/README.md.
"""
