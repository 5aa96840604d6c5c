#!/bin/sh
# coop_bench.sh — the cooperative path's figures (issue 14): for the two
# Llama-7B MLP shapes, the single-rank path (aq_layer_run), the cooperative
# path at Q = 1 and at Q = 2; prints the speed-up, the per-rank peak RSS ratio
# and the loss differences. Usage: bench/coop_bench.sh [BUILD_DIR] [extra bench_coop args]
# (a few minutes on an idle 2-core machine; each run is a fresh process so
# that getrusage's peak RSS is that run's). AQ_COOP_SHAPES="11008x4096" picks
# the shapes, AQ_COOP_SINGLE=0 skips the single-rank path.
set -eu
build=${1:-build}
[ $# -gt 0 ] && shift
bin=$build/bench/bench_coop
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# yield_when_idle: a rank waiting in a collective yields its core instead of
# spinning (the machine is shared; a spinning rank would steal its peer's time)
mpi="mpirun --oversubscribe --mca pml ob1 --mca btl self,vader --mca mpi_yield_when_idle 1"
echo "load before: $(uptime)"
out=$(mktemp)
for shape in ${AQ_COOP_SHAPES:-4096x11008 11008x4096}; do
    # AQ_COOP_SINGLE=0 skips the single-rank path (the Q=1 run is the same
    # algorithm; its loss matched it to 10 digits, docs/COOP.md)
    [ "${AQ_COOP_SINGLE:-1}" = 0 ] || "$bin" --single --shape $shape "$@" | tee -a "$out"
    $mpi -np 1 "$bin" --shape $shape "$@" | tee -a "$out"
    $mpi -np 2 "$bin" --shape $shape "$@" | tee -a "$out"
done
echo "load after: $(uptime)"
awk '
function val(line, key,   i, n, f, kv) {
    n = split(line, f, " ")
    for (i = 1; i <= n; i++) { split(f[i], kv, "="); if (kv[1] == key) return kv[2] }
    return ""
}
function maxrss(s,   n, a, i, m) { n = split(s, a, ","); m = 0; for (i = 1; i <= n; i++) if (a[i] + 0 > m) m = a[i] + 0; return m }
function maxof(s,   n, a, i, m) { n = split(s, a, ","); m = 0; for (i = 1; i <= n; i++) if (a[i] + 0 > m) m = a[i] + 0; return m }
function sumof(s,   n, a, i, m) { n = split(s, a, ","); m = 0; for (i = 1; i <= n; i++) m += a[i]; return m }
/^CPU/ {
    sh = val($0, "shape"); k = val($0, "mode") val($0, "q")
    cpu[sh, k] = val($0, "cpu_task"); cg[sh, k] = val($0, "cpu_gptq"); ca[sh, k] = val($0, "cpu_adam")
}
/^RESULT/ {
    sh = val($0, "shape"); k = val($0, "mode") val($0, "q")
    t[sh, k] = val($0, "t_task"); r[sh, k] = maxrss(val($0, "rss_mb")); l[sh, k] = val($0, "loss_final")
    kern = val($0, "kernel"); if (!(sh in seen)) { seen[sh] = 1; order[++ns] = sh }
}
END {
    printf "\nkernel: %s\n", kern
    printf "%-11s %9s %9s %9s %8s %9s %9s %9s %10s %10s\n", "shape", "t single", "t Q=1", "t Q=2", "speedup",
           "RSS 1", "RSS Q=1", "RSS Q=2", "RSS ratio", "loss rdiff"
    for (i = 1; i <= ns; i++) {
        sh = order[i]
        d = l[sh, "coop2"] - l[sh, "single1"]; if (d < 0) d = -d
        printf "%-11s %9.1f %9.1f %9.1f %8.2f %9.0f %9.0f %9.0f %10.2f %10.2e\n", sh, t[sh, "single1"], t[sh, "coop1"],
               t[sh, "coop2"], t[sh, "coop1"] / t[sh, "coop2"], r[sh, "single1"], r[sh, "coop1"], r[sh, "coop2"],
               r[sh, "coop2"] / r[sh, "coop1"], d / l[sh, "single1"]
    }
    printf "\nCPU seconds of the task per rank (user + system, getrusage; they include the time a rank\n"
    printf "polls or yields in a collective while its peer is descheduled, so under load they overstate the work)\n"
    printf "%-11s %9s %9s %13s %13s %13s %11s %9s\n", "shape", "cpu single", "cpu Q=1", "cpu Q=2/rank", "gptq Q=1|Q=2",
           "adam Q=1|Q=2", "cpu speedup", "cpu eff"
    for (i = 1; i <= ns; i++) {
        sh = order[i]
        m2 = maxof(cpu[sh, "coop2"])
        printf "%-11s %9.1f %9.1f %13s %13s %13s %11.2f %9.2f\n", sh, cpu[sh, "single1"], cpu[sh, "coop1"], cpu[sh, "coop2"],
               cg[sh, "coop1"] "|" cg[sh, "coop2"], ca[sh, "coop1"] "|" ca[sh, "coop2"], cpu[sh, "coop1"] / m2,
               cpu[sh, "coop1"] / sumof(cpu[sh, "coop2"])
    }
    print "cpu speedup = CPU(Q=1) / the CPU of the busiest Q=2 rank (the wall speed-up an idle machine would allow);"
    print "cpu eff = CPU(Q=1) / the sum over the Q=2 ranks (parallel efficiency from CPU time)."
    print "speedup = t(Q=1) / t(Q=2); RSS ratio = max per-rank peak RSS at Q=2 / peak at Q=1 (MB);"
    print "loss rdiff = |loss(Q=2) - loss(single-rank)| / loss(single-rank). Times in seconds (task only, Gram apart)."
}' "$out"
rm -f "$out"
