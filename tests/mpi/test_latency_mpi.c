/* The latency model over MPI (run under mpirun -np 3): a profile measured by rank 0 while the others wait
 * reaches every rank; every rank loads the written file and predicts the same values bit for bit; a
 * parallel profile on ranks that share CPU cores and a missing model file give every rank the same error. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "hsconas/latency.h"
#include "hsconas/rng.h"

enum { NARCH = 64 };

/* A tiny space and a short protocol in a fresh temporary run directory (made by rank 0, broadcast). */
static int setup(hsc_test *t, hsc_config *cfg, hsc_space *s) {
  char dir[64] = "/tmp/hsconas-lat.XXXXXX";
  int rank;
  HSC_CHECK_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
  if (rank == 0 && !mkdtemp(dir)) dir[0] = '\0';
  HSC_CHECK_MPI(MPI_Bcast(dir, sizeof dir, MPI_CHAR, 0, MPI_COMM_WORLD));
  if (!dir[0]) return T_FAIL(t, "mkdtemp failed"), 0;
  char run_dir[96];
  snprintf(run_dir, sizeof run_dir, "run.dir=%s", dir);
  const char *sets[] = {run_dir,
                        "space.stem_channels=8",
                        "space.stage_channels=[16,32]",
                        "space.stage_blocks=[1,2]",
                        "space.stage_strides=[2,2]",
                        "space.head_channels=64",
                        "space.scales=[0.5,1.0,1.5]",
                        "dist.threads=1",
                        "latency.fit_archs=8",
                        "latency.holdout_archs=4",
                        "latency.repeats=2",
                        "latency.warmup=1",
                        "latency.min_sample_ms=0.05"};
  return tu_space(t, cfg, s, sets, (int)ARRAY_LEN(sets));
}

/* Rank 0 removes the run directory of setup() and what profiling wrote there. */
static void cleanup(const hsc_config *cfg) {
  HSC_CHECK_MPI(MPI_Barrier(MPI_COMM_WORLD));
  if (hsc_proc()->rank != 0) return;
  char path[HSC_CFG_PATH + 32];
  snprintf(path, sizeof path, "%s/latency.yaml", cfg->run.dir);
  unlink(path);
  snprintf(path, sizeof path, "%s/latency-archs.csv", cfg->run.dir);
  unlink(path);
  rmdir(cfg->run.dir);
}

/* Every rank's predictions of the same architectures, compared bitwise with rank 0's. */
static void same_everywhere(hsc_test *t, const char *what, const hsc_latency_model *m, const hsc_space *s) {
  double p[NARCH], p0[NARCH];
  hsc_rng r;
  hsc_rng_init(&r, 9, HSC_RNG_TEST, 1);
  for (int i = 0; i < NARCH; i++) {
    hsc_arch a;
    hsc_arch_sample(s, NULL, &r, &a);
    p[i] = p0[i] = hsc_latency_predict(m, &a);
  }
  HSC_CHECK_MPI(MPI_Bcast(p0, NARCH, MPI_DOUBLE, 0, MPI_COMM_WORLD));
  if (memcmp(p, p0, sizeof p) != 0) T_FAIL(t, "%s: predictions differ from rank 0's", what);
}

static void t_profile_and_load(hsc_test *t) {
  hsc_config cfg;
  hsc_space s;
  if (!setup(t, &cfg, &s)) return;
  hsc_latency_model *m = malloc(2 * sizeof *m), *loaded = m + 1;
  hsc_error err = {0};
  const hsc_profile_opts opts = {.quiet = 1};
  if (hsc_latency_profile(&cfg, MPI_COMM_WORLD, &opts, m, &err) != HSC_OK) {
    T_FAIL(t, "profile: %s", err.msg);
    free(m);
    return;
  }
  T_CHECK(t, isfinite(m->k) && m->fit.n == 8 && m->holdout.n == 4 && m->space_hash == s.hash);
  same_everywhere(t, "profiled model", m, &s);
  char path[HSC_CFG_PATH + 16];
  hsc_latency_model_path(&cfg, path, sizeof path);
  if (hsc_latency_load(loaded, path, &s, 1, "cpu", MPI_COMM_WORLD, &err) != HSC_OK) {
    T_FAIL(t, "load: %s", err.msg);
  } else {
    same_everywhere(t, "loaded model", loaded, &s);
    /* The file holds the profiled model exactly. */
    hsc_rng r;
    hsc_rng_init(&r, 2, HSC_RNG_TEST, 2);
    for (int i = 0; i < NARCH; i++) {
      hsc_arch a;
      hsc_arch_sample(&s, NULL, &r, &a);
      const double x = hsc_latency_predict(m, &a), y = hsc_latency_predict(loaded, &a);
      if (memcmp(&x, &y, sizeof x) != 0) {
        T_FAIL(t, "loaded prediction %.17g differs from the profiled one %.17g", y, x);
        break;
      }
    }
  }
  /* A second profile finds the model and measures nothing. */
  T_CHECK(t, hsc_latency_profile(&cfg, MPI_COMM_WORLD, &opts, loaded, &err) == HSC_OK);
  T_CHECK(t, !strcmp(loaded->created, m->created) && !memcmp(&loaded->k, &m->k, sizeof m->k));
  free(m);
  cleanup(&cfg);
}

/* Every rank returns the same failure status and message. */
static void same_error(hsc_test *t, const char *what, hsc_status st, const hsc_error *err,
                       const char *pattern) {
  char msg0[sizeof err->msg];
  memcpy(msg0, err->msg, sizeof msg0);
  int code0 = st;
  HSC_CHECK_MPI(MPI_Bcast(&code0, 1, MPI_INT, 0, MPI_COMM_WORLD));
  HSC_CHECK_MPI(MPI_Bcast(msg0, (int)sizeof msg0, MPI_CHAR, 0, MPI_COMM_WORLD));
  if (st == HSC_OK)
    T_FAIL(t, "%s: accepted", what);
  else if ((int)st != code0 || strcmp(msg0, err->msg) != 0)
    T_FAIL(t, "%s: ranks disagree: '%s' vs rank 0's '%s'", what, err->msg, msg0);
  else if (!strstr(err->msg, pattern))
    T_FAIL(t, "%s: message lacks '%s': %s", what, pattern, err->msg);
}

static void t_errors_agree(hsc_test *t) {
  hsc_config cfg;
  hsc_space s;
  if (!setup(t, &cfg, &s)) return;
  hsc_latency_model *m = malloc(sizeof *m);
  hsc_error err = {0};
  hsc_status st = hsc_latency_load(m, "/nonexistent/latency.yaml", &s, 1, "cpu", MPI_COMM_WORLD, &err);
  same_error(t, "missing file", st, &err, "/nonexistent/latency.yaml");
  hsc_error e2 = {0};
  T_CHECK(t, hsc_config_set(&cfg, "latency.parallel=true", &e2) == HSC_OK);
  const hsc_profile_opts opts = {.quiet = 1};
  st = hsc_latency_profile(&cfg, MPI_COMM_WORLD, &opts, m, &err);
  same_error(t, "parallel on shared cores", st, &err, "latency.parallel");
  free(m);
  cleanup(&cfg);
}

/* latency.parallel: job i on rank i % 3, the results gathered; every rank ends with the same complete
 * model. (Allowed on one node only through the test hook: the timings of ranks sharing cores mean nothing.)
 */
static void t_parallel_split(hsc_test *t) {
  hsc_config cfg;
  hsc_space s;
  if (!setup(t, &cfg, &s)) return;
  hsc_error err = {0};
  T_REQUIRE(t, hsc_config_set(&cfg, "latency.parallel=true", &err) == HSC_OK);
  T_REQUIRE(t, setenv("HSC_PROFILE_SHARED_OK", "1", 1) == 0);
  hsc_latency_model *m = malloc(sizeof *m);
  const hsc_profile_opts opts = {.quiet = 1};
  const hsc_status st = hsc_latency_profile(&cfg, MPI_COMM_WORLD, &opts, m, &err);
  unsetenv("HSC_PROFILE_SHARED_OK");
  if (st != HSC_OK) {
    T_FAIL(t, "profile: %s", err.msg);
  } else {
    int missing = !(m->stem.median > 0) + !(m->head.median > 0);
    for (int l = 0; l < s.nblocks; l++)
      for (int o = 0; o < s.nops; o++)
        for (int c = 0; c < s.nscales; c++) missing += !(m->lut[l][s.ops[o]][c].median > 0);
    T_EQ_INT(t, missing, 0);
    T_CHECK(t, m->fit.n == 8 && m->holdout.n == 4 && isfinite(m->k) && isfinite(m->b));
    same_everywhere(t, "parallel profile", m, &s);
  }
  free(m);
  cleanup(&cfg);
}

int main(int argc, char **argv) {
  hsc_proc_init(&argc, &argv);
  static const hsc_test_case cases[] = {
      {"profile_reaches_every_rank_and_loads_identically", t_profile_and_load},
      {"errors_agree_on_every_rank", t_errors_agree},
      {"parallel_split_gathers_every_entry", t_parallel_split},
  };
  int rc = hsc_test_main("test_latency_mpi", argc, argv, cases, (int)ARRAY_LEN(cases));
  hsc_proc_finalize();
  return rc;
}
