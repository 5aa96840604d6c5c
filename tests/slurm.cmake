# Tests of the Slurm job-array mode (slurm/, tests/slurm/). Label `slurm`.
# test_submit_args: submit.sh and the templates against stub sbatch/srun (no daemons, ~1 s).
# test_slurm: a private single-node Slurm (local_slurm.sh) running the real pipeline on
# stories260K; skips (77) if slurm-wlm/munge or the assets are absent.
aq_script_test(NAME test_submit_args LABELS slurm TIMEOUT 60
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/slurm/test_submit_args.sh)
aq_script_test(NAME test_slurm LABELS slurm TIMEOUT 600
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/slurm/test_slurm.sh)
