/* Training-step and evaluation throughput of the supernet on one path, on any backend. bench/train.sh runs
 * it on the CPU beside bench/train_torch.py (same architecture, batch and threads); bench/gpu.sh runs it with
 * --backend cuda on the ImageNet space beside bench/train_torch.py --device cuda (PyTorch + cuDNN on the same
 * GPU).
 *
 *   train [--config FILE] [--backend NAME] [--arch ARCH] [--batch N] [--steps N] [--warmup N]
 *
 * Training: hsc_supernet_train_step (forward, loss, backward, SGD on the touched parameters) on a fixed
 * random batch already in backend memory, the path fixed; evaluation: the forward with running BN statistics
 * (BN folded into the convolutions). Each step is timed to the end of its work on the device (the backend's
 * sync). The default architecture gives block l the space's operator l mod (operator count) at the scale
 * nearest 1.0. Prints the median and the best over --steps timed steps after --warmup untimed ones (on the
 * GPU the first steps choose cuDNN algorithms and grow the workspace), as "train_img_s MEDIAN BEST" and
 * "eval_img_s MEDIAN BEST". --backend defaults to the config's dist.backend. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hsconas/config.h"
#include "hsconas/core.h"
#include "hsconas/rng.h"
#include "hsconas/space.h"
#include "hsconas/supernet.h"

/* Block l: the space's operator l mod nops, at the scale nearest 1.0. */
static void default_arch(const hsc_space *s, hsc_arch *a) {
  int one = 0;
  for (int i = 1; i < s->nscales; i++)
    if (fabs(s->scales[i] - 1.0) < fabs(s->scales[one] - 1.0)) one = i;
  a->nblocks = s->nblocks;
  for (int l = 0; l < s->nblocks; l++) {
    a->op[l] = (uint8_t)s->ops[l % s->nops];
    a->scale[l] = (uint8_t)one;
  }
}

static int cmp_double(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  const char *config = "configs/fmnist.yaml", *arch_text = NULL, *backend = NULL;
  int batch = 128, steps = 30, warmup = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--config"))
      config = argv[i + 1];
    else if (!strcmp(argv[i], "--backend"))
      backend = argv[i + 1];
    else if (!strcmp(argv[i], "--arch"))
      arch_text = argv[i + 1];
    else if (!strcmp(argv[i], "--batch"))
      batch = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--steps"))
      steps = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--warmup"))
      warmup = atoi(argv[i + 1]);
    else {
      fprintf(stderr, "train: unknown option %s\n", argv[i]);
      return 2;
    }
  }
  if (batch < 1 || steps < 1 || warmup < 0) {
    fprintf(stderr, "train: --batch and --steps must be positive\n");
    return 2;
  }
  hsc_proc_init(&argc, &argv);
  hsc_error err = {0};
  hsc_config cfg;
  hsc_space space;
  hsc_arch arch;
  if (hsc_config_load(&cfg, config, NULL, 0, MPI_COMM_SELF, &err) != HSC_OK ||
      hsc_space_init(&space, &cfg, &err) != HSC_OK ||
      (arch_text && hsc_arch_parse(&space, arch_text, &arch, &err) != HSC_OK)) {
    fprintf(stderr, "train: %s\n", err.msg);
    hsc_proc_finalize();
    return 1;
  }
  if (!arch_text) default_arch(&space, &arch);
  const hsc_backend *be = hsc_backend_find(backend ? backend : cfg.dist.backend, &err);
  hsc_backend_ctx *ctx = NULL;
  hsc_backend_opts bo = {.threads = 0, .device = -1};
  hsc_supernet *net = NULL;
  if (!be || be->init(&ctx, &bo, &err) != HSC_OK ||
      hsc_supernet_create(&net, &space, NULL, be, ctx, batch, &err) != HSC_OK) {
    fprintf(stderr, "train: %s\n", err.msg);
    if (ctx) be->free(ctx);
    hsc_proc_finalize();
    return 1;
  }
  hsc_supernet_init_weights(net, 1);
  const size_t img = (size_t)space.in_c * space.in_h * space.in_w;
  float *x = hsc_xmalloc((size_t)batch * img * sizeof(float));
  int32_t *y = hsc_xmalloc((size_t)batch * sizeof(int32_t));
  hsc_rng r;
  hsc_rng_init(&r, 1, HSC_RNG_TEST, 0);
  hsc_rng_fill_normal(&r, x, (size_t)batch * img, 0.0f, 1.0f);
  for (int i = 0; i < batch; i++) y[i] = (int32_t)hsc_rng_below(&r, (uint32_t)space.classes);
  hsc_supernet_load_batch(net, batch, x, y);
  const hsc_step_opts o = {.lr = 0.01f, .momentum = 0.9f, .weight_decay = 4e-5f, .smoothing = 0.1f};
  double *t = hsc_xmalloc((size_t)steps * sizeof(double));
  for (int phase = 0; phase < 2; phase++) {
    for (int s = -warmup; s < steps; s++) {
      const double t0 = hsc_now();
      if (phase == 0)
        hsc_supernet_train_step(net, &arch, MPI_COMM_SELF, &o);
      else
        hsc_supernet_forward(net, &arch, HSC_BN_EVAL);
      be->sync(ctx);
      if (s >= 0) t[s] = hsc_now() - t0;
    }
    qsort(t, (size_t)steps, sizeof(double), cmp_double);
    printf("%s_img_s %.1f %.1f\n", phase == 0 ? "train" : "eval", batch / t[steps / 2], batch / t[0]);
    fflush(stdout);
  }
  char desc[512], text[HSC_MAX_BLOCKS * 16];
  be->describe(ctx, desc, sizeof desc);
  hsc_arch_format(&space, &arch, text, sizeof text);
  printf("device %s\nbatch %d\narch %s\nmflops %.2f\n", desc, batch, text,
         hsc_arch_flops(&space, &arch) / 1e6);
  free(t), free(x), free(y);
  hsc_supernet_free(net);
  be->free(ctx);
  hsc_proc_finalize();
  return 0;
}
