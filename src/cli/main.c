/* The hsconas command: parses the command line and calls the library (no logic here). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hsconas/backend.h"
#include "hsconas/checkpoint.h"
#include "hsconas/config.h"
#include "hsconas/core.h"
#include "hsconas/latency.h"
#include "hsconas/rng.h"
#include "hsconas/search.h"
#include "hsconas/space.h"
#include "hsconas/train.h"

/* Exit statuses (DESIGN.md §4). */
enum { EXIT_DONE = 0, EXIT_ERROR = 1, EXIT_USAGE = 2, EXIT_STOPPED = 3 };

enum { MAX_SETS = 256, MAX_ARCHS = 1024 };

static void usage(FILE *out) {
  fprintf(
      out,
      "usage: hsconas COMMAND [ARGS]\n"
      "\n"
      "commands:\n"
      "  run CONFIG                       the whole pipeline: profile, train, search, report (every\n"
      "                                   phase resumes from its checkpoints: rerun it after a stop)\n"
      "  train CONFIG [--resume]          train the supernet (data-parallel over the MPI ranks)\n"
      "  search CONFIG                    shrinking stages and evolution on the trained supernet (rank 0\n"
      "                                   the master, the other ranks workers; resumes by itself)\n"
      "  report RUN_DIR                   rewrite best.yaml, history.csv, front.csv, summary.json, plots\n"
      "  eval CONFIG --arch ARCH ...      accuracy of architectures on the trained supernet\n"
      "       CONFIG --random N           ... of N random architectures (from run.seed)\n"
      "  retrain CONFIG --arch ARCH [--resume]\n"
      "                                   train ARCH alone from scratch, report test top-1\n"
      "  profile CONFIG [--force]         build the latency model of this device (LUT + fit + report)\n"
      "  latency CONFIG --arch ARCH ... [--measure]\n"
      "                                   predicted latency (and measured, with --measure)\n"
      "  config CONFIG [--dump]           check a configuration; --dump prints every key\n"
      "  config --keys                    every configuration key with its type, default and help\n"
      "  inspect FILE.h5                  summarise a checkpoint\n"
      "  arch CONFIG --arch ARCH | --random N\n"
      "                                   FLOPs, parameters and hash of architectures\n"
      "  version                          program version and the backends this build has\n"
      "  devices                          describe the device each backend would use on this rank\n"
      "  help                             this text\n"
      "\n"
      "options for commands that take CONFIG:\n"
      "  --set KEY=VALUE                  override a configuration key (repeatable)\n"
      "\n"
      "ARCH is one op:scale gene per block, comma separated, e.g. shuffle3:1.0,xception:0.6,...\n"
      "exit status: 0 done, 1 error, 2 usage, 3 stopped by a signal after a checkpoint (resumable)\n");
}

typedef struct {
  const char *config;
  const char *sets[MAX_SETS];
  int nsets;
  const char *archs[MAX_ARCHS];
  int narchs;
  int random;
  int resume, dump, keys, force, measure;
} cli_args;

/* Parses "CMD CONFIG [options]"; returns 0 or prints the problem and returns EXIT_USAGE. */
static int parse_args(int argc, char **argv, cli_args *a) {
  memset(a, 0, sizeof *a);
  for (int i = 2; i < argc; i++) {
    const char *s = argv[i];
    const int has_next = i + 1 < argc;
    if (!strcmp(s, "--set") && has_next) {
      if (a->nsets == MAX_SETS) return fprintf(stderr, "hsconas: too many --set options\n"), EXIT_USAGE;
      a->sets[a->nsets++] = argv[++i];
    } else if (!strncmp(s, "--set=", 6)) {
      if (a->nsets == MAX_SETS) return fprintf(stderr, "hsconas: too many --set options\n"), EXIT_USAGE;
      a->sets[a->nsets++] = s + 6;
    } else if (!strcmp(s, "--arch") && has_next) {
      if (a->narchs == MAX_ARCHS) return fprintf(stderr, "hsconas: too many --arch options\n"), EXIT_USAGE;
      a->archs[a->narchs++] = argv[++i];
    } else if (!strcmp(s, "--random") && has_next) {
      char *end;
      long v = strtol(argv[++i], &end, 10);
      if (*end || v < 1 || v > MAX_ARCHS)
        return fprintf(stderr, "hsconas: --random needs a count in [1, %d], got '%s'\n", MAX_ARCHS, argv[i]),
               EXIT_USAGE;
      a->random = (int)v;
    } else if (!strcmp(s, "--resume")) {
      a->resume = 1;
    } else if (!strcmp(s, "--dump")) {
      a->dump = 1;
    } else if (!strcmp(s, "--force")) {
      a->force = 1;
    } else if (!strcmp(s, "--measure")) {
      a->measure = 1;
    } else if (!strcmp(s, "--keys")) {
      a->keys = 1;
    } else if (s[0] == '-') {
      return fprintf(stderr, "hsconas: unknown or incomplete option '%s' (see 'hsconas help')\n", s),
             EXIT_USAGE;
    } else if (!a->config) {
      a->config = s;
    } else {
      return fprintf(stderr, "hsconas: unexpected argument '%s' (see 'hsconas help')\n", s), EXIT_USAGE;
    }
  }
  return 0;
}

static int report(const hsc_error *err) {
  if (err->code == HSC_ERR_STOPPED) {
    hsc_log(HSC_LOG_INFO, "%s", err->msg);
    return EXIT_STOPPED;
  }
  if (hsc_proc()->rank == 0) fprintf(stderr, "hsconas: %s\n", err->msg);
  return EXIT_ERROR;
}

/* check_ranks 0: without the checks that depend on the rank count (for the search, which checks them
 * itself when it trains). */
static int load_config_ranks(const cli_args *a, hsc_config *cfg, int check_ranks, hsc_error *err) {
  if (!a->config) {
    if (hsc_proc()->rank == 0) fprintf(stderr, "hsconas: missing CONFIG (see 'hsconas help')\n");
    return EXIT_USAGE;
  }
  if (hsc_config_load_ranks(cfg, a->config, a->sets, a->nsets, MPI_COMM_WORLD, check_ranks, err) != HSC_OK)
    return report(err);
  return 0;
}

static int load_config(const cli_args *a, hsc_config *cfg, hsc_error *err) {
  return load_config_ranks(a, cfg, 1, err);
}

/* The architectures named by --arch and --random, into archs [MAX_ARCHS]. */
static int collect_archs(const cli_args *a, const hsc_config *cfg, hsc_space *space, hsc_arch *archs, int *n,
                         hsc_error *err) {
  if (hsc_space_init(space, cfg, err) != HSC_OK) return report(err);
  *n = 0;
  for (int i = 0; i < a->narchs; i++)
    if (hsc_arch_parse(space, a->archs[i], &archs[(*n)++], err) != HSC_OK) {
      if (hsc_proc()->rank == 0) fprintf(stderr, "hsconas: --arch %s: %s\n", a->archs[i], err->msg);
      return EXIT_ERROR;
    }
  for (int i = 0; i < a->random && *n < MAX_ARCHS; i++) {
    hsc_rng r;
    /* Index space far from the training paths' (one per step) so that the two never coincide. */
    hsc_rng_init(&r, (uint64_t)cfg->run.seed, HSC_RNG_SEARCH, ((uint64_t)1 << 48) + (uint64_t)i);
    hsc_arch_sample(space, NULL, &r, &archs[(*n)++]);
  }
  if (*n == 0) {
    if (hsc_proc()->rank == 0) fprintf(stderr, "hsconas: give --arch ARCH or --random N\n");
    return EXIT_USAGE;
  }
  return 0;
}

/* The config, its space and the architectures of the command line; *archs is malloc'd (NULL on failure). */
static int load_archs(const cli_args *a, hsc_config *cfg, hsc_space *space, hsc_arch **archs, int *n,
                      hsc_error *err) {
  *archs = NULL;
  int rc = load_config(a, cfg, err);
  if (rc) return rc;
  *archs = hsc_xmalloc(MAX_ARCHS * sizeof(hsc_arch));
  if ((rc = collect_archs(a, cfg, space, *archs, n, err)) != 0) {
    free(*archs);
    *archs = NULL;
  }
  return rc;
}

static int cmd_config(const cli_args *a) {
  if (a->keys) {
    hsc_config_print_schema(stdout);
    return EXIT_DONE;
  }
  hsc_config cfg;
  hsc_error err = {0};
  int rc = load_config(a, &cfg, &err);
  if (rc) return rc;
  hsc_space space; /* the space's own checks (widths, strides, operators) too */
  if (hsc_space_init(&space, &cfg, &err) != HSC_OK) return report(&err);
  if (hsc_proc()->rank == 0) {
    if (a->dump) {
      char *text = hsc_config_dump(&cfg, 1);
      fputs(text, stdout);
      free(text);
    } else {
      printf("%s: valid (config hash %016llx)\n", a->config, (unsigned long long)hsc_config_hash(&cfg));
    }
  }
  return EXIT_DONE;
}

static int cmd_train(const cli_args *a) {
  hsc_config cfg;
  hsc_error err = {0};
  int rc = load_config(a, &cfg, &err);
  if (rc) return rc;
  hsc_train_result res;
  if (hsc_train_supernet(&cfg, MPI_COMM_WORLD, a->resume, &res, &err) != HSC_OK) return report(&err);
  if (res.images_per_s > 0) /* else the checkpoints already held the whole schedule */
    hsc_log(HSC_LOG_INFO, "supernet trained: %lld steps, last loss %.4f, top1 %.2f%%, %.0f img/s, %.1f s",
            (long long)res.step, res.loss, res.top1, res.images_per_s, res.seconds);
  return EXIT_DONE;
}

static int cmd_eval(const cli_args *a) {
  hsc_config cfg;
  hsc_error err = {0};
  hsc_space space;
  hsc_arch *archs;
  int n = 0, rc = load_archs(a, &cfg, &space, &archs, &n, &err);
  if (rc) return rc;
  hsc_eval_result *res = hsc_xmalloc((size_t)n * sizeof *res);
  const double t0 = hsc_now();
  if (hsc_eval_supernet(&cfg, MPI_COMM_WORLD, archs, n, res, &err) != HSC_OK) {
    free(archs), free(res);
    return report(&err);
  }
  if (hsc_proc()->rank == 0) {
    double mean = 0.0;
    printf("%-16s %8s %8s %8s %9s  %s\n", "hash", "top1%", "top5%", "loss", "MFLOPs", "arch");
    for (int i = 0; i < n; i++) {
      char text[4096];
      hsc_arch_format(&space, &archs[i], text, sizeof text);
      printf("%016llx %8.2f %8.2f %8.4f %9.2f  %s\n", (unsigned long long)hsc_arch_hash(&space, &archs[i]),
             res[i].top1, res[i].top5, res[i].loss, hsc_arch_flops(&space, &archs[i]) / 1e6, text);
      mean += res[i].top1;
    }
    printf("mean top1 %.2f%% over %d architectures (%d validation images each, %.1f s)\n", mean / n, n,
           res[0].images, hsc_now() - t0);
  }
  free(archs), free(res);
  return EXIT_DONE;
}

static int cmd_retrain(const cli_args *a) {
  hsc_config cfg;
  hsc_error err = {0};
  int rc = load_config(a, &cfg, &err);
  if (rc) return rc;
  if (a->narchs != 1 || a->random) {
    if (hsc_proc()->rank == 0) fprintf(stderr, "hsconas: retrain needs exactly one --arch ARCH\n");
    return EXIT_USAGE;
  }
  hsc_space space;
  hsc_arch arch;
  int n;
  if ((rc = collect_archs(a, &cfg, &space, &arch, &n, &err)) != 0) return rc;
  hsc_train_result res;
  hsc_eval_result test;
  if (hsc_retrain(&cfg, MPI_COMM_WORLD, &arch, a->resume, &res, &test, &err) != HSC_OK) return report(&err);
  if (hsc_proc()->rank == 0)
    printf("retrained %lld steps (%.1f s this run); test top1 %.2f%% top5 %.2f%% loss %.4f on %d images\n",
           (long long)res.step, res.seconds, test.top1, test.top5, test.loss, test.images);
  return EXIT_DONE;
}

static int cmd_arch(const cli_args *a) {
  hsc_config cfg;
  hsc_error err = {0};
  hsc_space space;
  hsc_arch *archs;
  int n = 0, rc = load_archs(a, &cfg, &space, &archs, &n, &err);
  if (rc) return rc;
  if (hsc_proc()->rank == 0) {
    printf("%-16s %9s %9s  %s\n", "hash", "MFLOPs", "params", "arch");
    for (int i = 0; i < n; i++) {
      char text[4096];
      hsc_arch_format(&space, &archs[i], text, sizeof text);
      printf("%016llx %9.2f %9lld  %s\n", (unsigned long long)hsc_arch_hash(&space, &archs[i]),
             hsc_arch_flops(&space, &archs[i]) / 1e6, (long long)hsc_arch_params(&space, &archs[i]), text);
    }
  }
  free(archs);
  return EXIT_DONE;
}

static void print_quality(const char *what, const hsc_lat_quality *q) {
  printf(
      "  %-24s %4d archs  RMSE %8.4f ms  MAPE %6.2f%%  max %6.2f%%  within 5%% %5.1f%%  within 10%% %5.1f%%  "
      "Pearson %.4f  Spearman %.4f  Kendall %.4f\n",
      what, q->n, q->rmse_ms, q->mape, q->max_ape, q->within5, q->within10, q->pearson, q->spearman,
      q->kendall);
}

static int cmd_profile(const cli_args *a) {
  hsc_config cfg;
  hsc_error err = {0};
  int rc = load_config(a, &cfg, &err);
  if (rc) return rc;
  hsc_latency_model *m = hsc_xcalloc(1, sizeof *m);
  const hsc_profile_opts opts = {.force = a->force};
  if (hsc_latency_profile(&cfg, MPI_COMM_WORLD, &opts, m, &err) != HSC_OK) {
    free(m);
    return report(&err);
  }
  if (hsc_proc()->rank == 0) {
    char path[HSC_CFG_PATH + 16];
    hsc_latency_model_path(&cfg, path, sizeof path);
    printf("latency model %s: %s backend, batch %d, %s\n", path, m->backend, m->batch, m->device);
    printf("  LAT = %.6f * (stem + sum LUT + head) %+.6f ms  (fitted on %d architectures)\n", m->k, m->b,
           m->fit.n);
    print_quality("fit set, model", &m->fit);
    if (m->holdout.n) {
      print_quality("hold-out, model", &m->holdout);
      print_quality("hold-out, FLOPs proxy", &m->flops);
    }
  }
  free(m);
  return EXIT_DONE;
}

static int cmd_latency(const cli_args *a) {
  hsc_config cfg;
  hsc_error err = {0};
  hsc_space space;
  hsc_arch *archs;
  int n = 0, rc = load_archs(a, &cfg, &space, &archs, &n, &err);
  if (rc) return rc;
  char path[HSC_CFG_PATH + 16];
  hsc_latency_model_path(&cfg, path, sizeof path);
  hsc_latency_model *m = hsc_xcalloc(1, sizeof *m);
  hsc_lat_entry *meas = hsc_xcalloc((size_t)n, sizeof *meas);
  if (hsc_latency_load(m, path, &space, cfg.latency.batch, cfg.dist.backend, MPI_COMM_WORLD, &err) !=
          HSC_OK ||
      (a->measure && hsc_latency_measure(&cfg, MPI_COMM_WORLD, archs, n, meas, &err) != HSC_OK)) {
    free(archs), free(m), free(meas);
    return report(&err);
  }
  if (hsc_proc()->rank == 0) {
    printf("%-16s %12s", "hash", "predicted_ms");
    if (a->measure) printf(" %12s %10s %8s", "measured_ms", "iqr_ms", "error%");
    printf("  arch\n");
    for (int i = 0; i < n; i++) {
      char text[4096];
      hsc_arch_format(&space, &archs[i], text, sizeof text);
      const double p = hsc_latency_predict(m, &archs[i]);
      printf("%016llx %12.4f", (unsigned long long)hsc_arch_hash(&space, &archs[i]), p);
      if (a->measure)
        printf(" %12.4f %10.4f %+8.2f", meas[i].median, meas[i].iqr,
               (p - meas[i].median) / meas[i].median * 100);
      printf("  %s\n", text);
    }
  }
  free(archs), free(m), free(meas);
  return EXIT_DONE;
}

/* The closing summary of a search (rank 0). */
static void print_search(const hsc_config *cfg, const char *run_dir, const hsc_search_result *r) {
  if (hsc_proc()->rank != 0) return;
  printf("search: %d candidates evaluated, latency target %.4f ms\n", r->nhistory, r->target_ms);
  if (cfg)
    printf("        this run evaluated %d (resumed from a checkpoint holding %d)\n", r->evaluated,
           r->resumed_from);
  if (r->best.arch.nblocks > 0)
    printf(
        "best:   %s\n        validation top1 %.2f%% on the supernet, predicted latency %.4f ms, %.2f MFLOPs "
        "(hash %016llx)\n",
        r->best_text, r->best.top1, r->best.latency_ms, (double)r->best.flops / 1e6,
        (unsigned long long)r->best.hash);
  if (r->nfront) printf("front:  %d architectures in %s/front.csv\n", r->nfront, run_dir);
  printf("files:  %s/best.yaml, history.csv, summary.json\nplots:  %s/pareto.svg, %s/progress.svg\n", run_dir,
         run_dir, run_dir);
  if (cfg)
    printf(
        "next:   hsconas retrain CONFIG --arch \"$(cat %s/best.yaml)\"  (trains it alone, reports test "
        "top1)\n",
        run_dir);
}

static int cmd_search(const cli_args *a) {
  hsc_config cfg;
  hsc_error err = {0};
  int rc = load_config_ranks(a, &cfg, 0, &err);
  if (rc) return rc;
  hsc_search_result res;
  if (hsc_search(&cfg, MPI_COMM_WORLD, &res, &err) != HSC_OK) return report(&err);
  print_search(&cfg, cfg.run.dir, &res);
  return EXIT_DONE;
}

static int cmd_run(const cli_args *a) {
  hsc_config cfg;
  hsc_error err = {0};
  int rc = load_config(a, &cfg, &err);
  if (rc) return rc;
  hsc_log(HSC_LOG_INFO, "== 1/3 latency model (skipped when run.dir holds a valid one)");
  hsc_latency_model *m = hsc_xcalloc(1, sizeof *m);
  const hsc_profile_opts popts = {.force = 0};
  hsc_status st = hsc_latency_profile(&cfg, MPI_COMM_WORLD, &popts, m, &err);
  free(m);
  if (st != HSC_OK) return report(&err);
  hsc_log(HSC_LOG_INFO, "== 2/3 supernet training (resumes from run.dir's checkpoints)");
  hsc_train_result tr;
  if (hsc_train_supernet(&cfg, MPI_COMM_WORLD, 1, &tr, &err) != HSC_OK) return report(&err);
  hsc_log(HSC_LOG_INFO, "== 3/3 search (resumes from run.dir's search checkpoint)");
  hsc_search_result res;
  if (hsc_search(&cfg, MPI_COMM_WORLD, &res, &err) != HSC_OK) return report(&err);
  print_search(&cfg, cfg.run.dir, &res);
  return EXIT_DONE;
}

static int cmd_report(const cli_args *a) {
  if (!a->config) {
    if (hsc_proc()->rank == 0) fprintf(stderr, "hsconas: report needs RUN_DIR\n");
    return EXIT_USAGE;
  }
  hsc_error err = {0};
  hsc_search_result res;
  if (hsc_proc()->rank == 0) {
    if (hsc_search_report(a->config, &res, &err) != HSC_OK) return report(&err);
    print_search(NULL, a->config, &res);
  }
  return EXIT_DONE;
}

static int cmd_inspect(const cli_args *a) {
  if (!a->config) {
    fprintf(stderr, "hsconas: inspect needs FILE.h5\n");
    return EXIT_USAGE;
  }
  hsc_error err = {0};
  if (hsc_proc()->rank == 0 && hsc_ckpt_inspect(a->config, stdout, &err) != HSC_OK) return report(&err);
  return EXIT_DONE;
}

static int cmd_version(void) {
  printf("hsconas %s\nbackends: %s\n", HSC_VERSION, hsc_backend_list());
  return EXIT_DONE;
}

static int cmd_devices(void) {
  const char *list = hsc_backend_list();
  char names[64];
  snprintf(names, sizeof names, "%s", list);
  for (char *save = NULL, *name = strtok_r(names, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
    hsc_error err = {0};
    const hsc_backend *be = hsc_backend_find(name, &err);
    hsc_backend_ctx *ctx = NULL;
    hsc_backend_opts opts = {.threads = 0, .device = -1};
    if (!be || be->init(&ctx, &opts, &err) != HSC_OK) {
      printf("%s: unavailable: %s\n", name, err.msg);
      continue;
    }
    char desc[512];
    be->describe(ctx, desc, sizeof desc);
    printf("%s\n", desc);
    be->free(ctx);
  }
  return EXIT_DONE;
}

typedef struct {
  const char *name;
  int (*fn)(const cli_args *a);
} command;

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return EXIT_USAGE;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
    usage(stdout);
    return EXIT_DONE;
  }
  if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) return cmd_version();
  static const command commands[] = {
      {"train", cmd_train},     {"eval", cmd_eval}, {"retrain", cmd_retrain}, {"config", cmd_config},
      {"inspect", cmd_inspect}, {"arch", cmd_arch}, {"profile", cmd_profile}, {"latency", cmd_latency},
      {"search", cmd_search},   {"run", cmd_run},   {"report", cmd_report},
  };
  const command *c = NULL;
  for (size_t i = 0; i < ARRAY_LEN(commands); i++)
    if (!strcmp(cmd, commands[i].name)) c = &commands[i];
  if (!c && strcmp(cmd, "devices") != 0) {
    fprintf(stderr, "hsconas: unknown command '%s' (see 'hsconas help')\n", cmd);
    return EXIT_USAGE;
  }
  cli_args a;
  if (c) {
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc;
  }
  hsc_proc_init(&argc, &argv);
  int rc = c ? c->fn(&a) : cmd_devices();
  hsc_proc_finalize();
  return rc;
}
