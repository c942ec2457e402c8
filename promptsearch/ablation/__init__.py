"""Promotion to full ablations: a promoted trial's recipe run as the experiment that decides.

In: a promoted trial (its recipe and mix ratio) and an ablation profile (`proxies/full-21b.yaml`,
`proxies/cpu-smoke.yaml`). Out: a bundle folder (datatrove rephrase + tokenization jobs, a nanotron
config and sbatch script, an eval job) submitted to Slurm as a `--dependency=afterok` chain, tracked
in SQL, and its lighteval results ingested and compared with the proxy.

Modules, one per stage: `profile` (the typed settings), `nanotron` (the training config), `bundle`
(writes the folder), `slurm` (submits, tracks, cancels), `results` (ingest and calibration),
`jobs` (what runs inside the Slurm jobs, including the CPU stand-ins).
"""
