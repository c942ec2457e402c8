"""Promotion to full ablations: a promoted trial's recipe run as the experiment that decides.

In: a promoted trial (its recipe and mix ratio) and an ablation profile (`proxies/full-21b.yaml`,
`proxies/cpu-smoke.yaml`). Out: a bundle folder (datatrove rephrase + tokenization jobs, a nanotron
config and sbatch script, an eval job) submitted to Slurm as a `--dependency=afterok` chain, tracked
in SQL, and its lighteval results ingested and compared with the proxy.

Modules, one per stage: `profile` (the typed settings), `nanotron` (the training config), `bundle`
(the manifest and its paths; writes the folder), `executors` (the datatrove stages built from the
manifest, with the CPU stand-in for vLLM), `slurm` (submits, tracks, cancels), `results` (ingest and
rank agreement), `jobs` (the `python -m` entry points of the train and evaluate jobs, with the CPU
stand-in for nanotron). Imports go one way: profile → nanotron → bundle → executors → slurm →
results → jobs.
"""
