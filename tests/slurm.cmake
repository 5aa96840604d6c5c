# Tests of the Slurm job-array mode (slurm/, tests/slurm/). Label `slurm`.
# test_submit_args: submit.sh and the templates against stub sbatch/srun (no daemons, ~1 s).
# test_slurm: a private single-node Slurm (local_slurm.sh) running the real pipeline on
# stories260K; skips (77) if slurm-wlm/munge or the assets are absent.
aq_script_test(NAME test_submit_args LABELS slurm TIMEOUT 60
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/slurm/test_submit_args.sh)
# TIMEOUT: the sum of the test's own wait bounds (4 x 200 s, the reference running beside them; see
# test_slurm.sh) plus start-up and checks; it took 233 s on a loaded 2-core machine.
aq_script_test(NAME test_slurm LABELS slurm TIMEOUT 900
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/slurm/test_slurm.sh)
