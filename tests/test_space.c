/* The search space: block shapes, configuration errors, the text and YAML forms, hashes, sampling, and
 * FLOPs and parameter counts against PyTorch.
 *
 * tests/ref/space_ref.py writes $HSC_REF_DIR/space.h5 (default build/ref): per shipped space a group with
 * the text form of ~20 architectures and torch's FLOPs (forward hooks) and parameter counts of the
 * stand-alone network. The spaces are filled here by hand, exactly as configs/fmnist.yaml and
 * configs/imagenet.yaml define them, so this test does not depend on the config loader. */
#include <hdf5.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "hsconas/space.h"

#define REF_FILE "space.h5"

static const char *const ALL_OPS[] = {"shuffle3", "shuffle5", "shuffle7", "xception"};
static const double TENTHS[] = {0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0};

/* The space.* keys of a config, the rest zero. Lists end at their given counts. */
typedef struct {
  int in_c, in_size, stem_c, stem_stride;
  int nstages;
  const int *channels, *blocks, *strides;
  int head_c, classes;
  int nops;
  const char *const *ops;
  int nscales;
  const double *scales;
} space_keys;

static void fill_space(hsc_config *cfg, const space_keys *k) {
  memset(cfg, 0, sizeof *cfg);
  cfg->space.input_channels = k->in_c;
  cfg->space.input_size = k->in_size;
  cfg->space.stem_channels = k->stem_c;
  cfg->space.stem_stride = k->stem_stride;
  cfg->space.n_stage_channels = cfg->space.n_stage_blocks = cfg->space.n_stage_strides = k->nstages;
  for (int i = 0; i < k->nstages; i++) {
    cfg->space.stage_channels[i] = k->channels[i];
    cfg->space.stage_blocks[i] = k->blocks[i];
    cfg->space.stage_strides[i] = k->strides[i];
  }
  cfg->space.head_channels = k->head_c;
  cfg->space.classes = k->classes;
  cfg->space.n_ops = k->nops;
  for (int i = 0; i < k->nops; i++) snprintf(cfg->space.ops[i], sizeof cfg->space.ops[i], "%s", k->ops[i]);
  cfg->space.n_scales = k->nscales;
  for (int i = 0; i < k->nscales; i++) cfg->space.scales[i] = k->scales[i];
}

/* configs/fmnist.yaml */
static void fill_fmnist(hsc_config *cfg) {
  static const int channels[] = {48, 96, 192}, blocks[] = {2, 4, 2}, strides[] = {2, 2, 1};
  fill_space(cfg, &(space_keys){.in_c = 1,
                                .in_size = 28,
                                .stem_c = 16,
                                .stem_stride = 1,
                                .nstages = 3,
                                .channels = channels,
                                .blocks = blocks,
                                .strides = strides,
                                .head_c = 512,
                                .classes = 10,
                                .nops = 4,
                                .ops = ALL_OPS,
                                .nscales = 10,
                                .scales = TENTHS});
}

/* configs/imagenet.yaml */
static void fill_imagenet(hsc_config *cfg) {
  static const int channels[] = {64, 160, 320, 640}, blocks[] = {4, 4, 8, 4}, strides[] = {2, 2, 2, 2};
  fill_space(cfg, &(space_keys){.in_c = 3,
                                .in_size = 224,
                                .stem_c = 16,
                                .stem_stride = 2,
                                .nstages = 4,
                                .channels = channels,
                                .blocks = blocks,
                                .strides = strides,
                                .head_c = 1024,
                                .classes = 1000,
                                .nops = 4,
                                .ops = ALL_OPS,
                                .nscales = 10,
                                .scales = TENTHS});
}

static int init_fmnist(hsc_test *t, hsc_space *s) {
  hsc_config cfg;
  hsc_error err = {0};
  fill_fmnist(&cfg);
  if (hsc_space_init(s, &cfg, &err) != HSC_OK) {
    T_FAIL(t, "fmnist space: %s", err.msg);
    return 0;
  }
  return 1;
}

static void check_block(hsc_test *t, const hsc_space *s, int l, int stage, int cin, int cout, int stride,
                        int h_in, int h_out, int has_proj, int main_in, int main_out) {
  const hsc_block_shape *b = &s->blocks[l];
  if (b->stage != stage || b->cin != cin || b->cout != cout || b->stride != stride || b->h_in != h_in ||
      b->w_in != h_in || b->h_out != h_out || b->w_out != h_out || b->has_proj != has_proj ||
      b->main_in != main_in || b->main_out != main_out)
    T_FAIL(
        t,
        "block %d: stage %d cin %d cout %d stride %d h %d->%d w %d->%d proj %d main %d->%d; expected stage "
        "%d cin %d cout %d stride %d h %d->%d proj %d main %d->%d",
        l, b->stage, b->cin, b->cout, b->stride, b->h_in, b->h_out, b->w_in, b->w_out, b->has_proj,
        b->main_in, b->main_out, stage, cin, cout, stride, h_in, h_out, has_proj, main_in, main_out);
}

static void t_op_table(hsc_test *t) {
  for (int o = 0; o < HSC_OP_COUNT; o++) T_CHECK(t, !strcmp(hsc_op_name((hsc_op)o), ALL_OPS[o]));
  T_CHECK(t, hsc_op_name(HSC_OP_COUNT) == NULL);
  T_EQ_INT(t, hsc_op_kernel(HSC_OP_SHUFFLE3), 3);
  T_EQ_INT(t, hsc_op_kernel(HSC_OP_SHUFFLE5), 5);
  T_EQ_INT(t, hsc_op_kernel(HSC_OP_SHUFFLE7), 7);
  T_EQ_INT(t, hsc_op_kernel(HSC_OP_XCEPTION), 3);
}

static void t_shapes_fmnist(hsc_test *t) {
  hsc_space s;
  T_REQUIRE(t, init_fmnist(t, &s));
  T_EQ_INT(t, s.in_c, 1);
  T_EQ_INT(t, s.in_h, 28);
  T_EQ_INT(t, s.stem_c, 16);
  T_EQ_INT(t, s.stem_h, 28);
  T_EQ_INT(t, s.stem_w, 28);
  T_EQ_INT(t, s.nblocks, 8);
  T_EQ_INT(t, s.head_c, 512);
  T_EQ_INT(t, s.classes, 10);
  T_EQ_INT(t, s.nops, 4);
  T_EQ_INT(t, s.nscales, 10);
  /*              l  stage cin cout stride h_in h_out proj main_in main_out */
  check_block(t, &s, 0, 0, 16, 48, 2, 28, 14, 1, 16, 32);
  check_block(t, &s, 1, 0, 48, 48, 1, 14, 14, 0, 24, 24);
  check_block(t, &s, 2, 1, 48, 96, 2, 14, 7, 1, 48, 48);
  for (int l = 3; l < 6; l++) check_block(t, &s, l, 1, 96, 96, 1, 7, 7, 0, 48, 48);
  check_block(t, &s, 6, 2, 96, 192, 1, 7, 7, 1, 96, 96);
  check_block(t, &s, 7, 2, 192, 192, 1, 7, 7, 0, 96, 96);
  /* mid = max(1, floor(C/2 * scale)): block 0 has C/2 = 24. */
  T_EQ_INT(t, s.mid[0][4], 24);  /* 1.0 */
  T_EQ_INT(t, s.mid[0][0], 4);   /* 0.2: 4.8 */
  T_EQ_INT(t, s.mid[0][2], 14);  /* 0.6: 14.4 */
  T_EQ_INT(t, s.mid[0][9], 48);  /* 2.0 */
  T_EQ_INT(t, s.mid[2][0], 9);   /* C/2 = 48: 9.6 */
  T_EQ_INT(t, s.mid[7][6], 134); /* C/2 = 96, 1.4: 134.4 */
  static const int max_mid[] = {48, 48, 96, 96, 96, 96, 192, 192};
  for (int l = 0; l < 8; l++) T_EQ_INT(t, s.max_mid[l], max_mid[l]);
  for (int o = 0; o < 4; o++) T_EQ_INT(t, s.ops[o], o);
}

static void t_shapes_imagenet(hsc_test *t) {
  hsc_config cfg;
  hsc_error err = {0};
  hsc_space s;
  fill_imagenet(&cfg);
  T_REQUIRE(t, hsc_space_init(&s, &cfg, &err) == HSC_OK);
  T_EQ_INT(t, s.stem_h, 112);
  T_EQ_INT(t, s.stem_w, 112);
  T_EQ_INT(t, s.nblocks, 20);
  /* Stage starts: 16 -> 64 at 112 -> 56, 64 -> 160 at 28, 160 -> 320 at 14, 320 -> 640 at 7. */
  check_block(t, &s, 0, 0, 16, 64, 2, 112, 56, 1, 16, 48);
  check_block(t, &s, 1, 0, 64, 64, 1, 56, 56, 0, 32, 32);
  check_block(t, &s, 3, 0, 64, 64, 1, 56, 56, 0, 32, 32);
  check_block(t, &s, 4, 1, 64, 160, 2, 56, 28, 1, 64, 96);
  check_block(t, &s, 7, 1, 160, 160, 1, 28, 28, 0, 80, 80);
  check_block(t, &s, 8, 2, 160, 320, 2, 28, 14, 1, 160, 160);
  check_block(t, &s, 15, 2, 320, 320, 1, 14, 14, 0, 160, 160);
  check_block(t, &s, 16, 3, 320, 640, 2, 14, 7, 1, 320, 320);
  check_block(t, &s, 19, 3, 640, 640, 1, 7, 7, 0, 320, 320);
  T_EQ_INT(t, s.mid[0][4], 32);
  T_EQ_INT(t, s.max_mid[19], 640);
  /* An odd size rounds up under stride 2 (the depthwise rule): 225 -> 113 -> 57 -> 29 -> 15 -> 8. */
  cfg.space.input_size = 225;
  T_REQUIRE(t, hsc_space_init(&s, &cfg, &err) == HSC_OK);
  T_EQ_INT(t, s.stem_h, 113);
  T_EQ_INT(t, s.blocks[0].h_out, 57);
  T_EQ_INT(t, s.blocks[19].h_out, 8);
}

/* The 1e-6 in the mid rule: 0.57 * 100 is 56.99999999999999 in doubles; the intended width is 57. */
static void t_mid_rounding(hsc_test *t) {
  static const int channels[] = {200}, blocks[] = {1}, strides[] = {1};
  static const double scales[] = {0.005, 0.57, 1.0};
  hsc_config cfg;
  hsc_error err = {0};
  hsc_space s;
  fill_space(&cfg, &(space_keys){.in_c = 1,
                                 .in_size = 4,
                                 .stem_c = 8,
                                 .stem_stride = 1,
                                 .nstages = 1,
                                 .channels = channels,
                                 .blocks = blocks,
                                 .strides = strides,
                                 .head_c = 8,
                                 .classes = 2,
                                 .nops = 1,
                                 .ops = ALL_OPS,
                                 .nscales = 3,
                                 .scales = scales});
  T_REQUIRE(t, hsc_space_init(&s, &cfg, &err) == HSC_OK);
  T_EQ_INT(t, s.mid[0][0], 1); /* 0.5 -> at least 1 */
  T_EQ_INT(t, s.mid[0][1], 57);
  T_EQ_INT(t, s.mid[0][2], 100);
  T_EQ_INT(t, s.max_mid[0], 100);
}

/* hsc_space_init on cfg must fail with HSC_ERR_INPUT and a message holding every one of want[]. */
static void expect_init_error(hsc_test *t, int line, const hsc_config *cfg, const char *const *want, int n) {
  hsc_space s;
  hsc_error err = {0};
  hsc_status st = hsc_space_init(&s, cfg, &err);
  if (st != HSC_ERR_INPUT) {
    hsc_test_fail_at(t, __FILE__, line, "hsc_space_init returned %d (%s), expected HSC_ERR_INPUT", st,
                     st == HSC_OK ? "accepted" : err.msg);
    return;
  }
  for (int i = 0; i < n; i++)
    if (!strstr(err.msg, want[i]))
      hsc_test_fail_at(t, __FILE__, line, "message '%s' lacks '%s'", err.msg, want[i]);
}
#define EXPECT_INIT_ERROR(t, cfg, ...)                                        \
  expect_init_error((t), __LINE__, (cfg), (const char *const[]){__VA_ARGS__}, \
                    (int)(sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *)))

static void t_init_errors(hsc_test *t) {
  hsc_config cfg;
  fill_fmnist(&cfg);
  snprintf(cfg.space.ops[1], sizeof cfg.space.ops[1], "shufle5");
  EXPECT_INIT_ERROR(t, &cfg, "space.ops[1]", "'shufle5'", "expected shuffle3, shuffle5, shuffle7, xception");

  fill_fmnist(&cfg);
  snprintf(cfg.space.ops[3], sizeof cfg.space.ops[3], "shuffle3");
  EXPECT_INIT_ERROR(t, &cfg, "space.ops[3]", "twice");

  fill_fmnist(&cfg);
  cfg.space.stage_channels[1] = 95;
  EXPECT_INIT_ERROR(t, &cfg, "space.stage_channels[1]", "95", "even");

  fill_fmnist(&cfg); /* the first block outputs cout - cin main channels: none */
  cfg.space.stage_channels[0] = 16;
  EXPECT_INIT_ERROR(t, &cfg, "space.stage_channels[0]", "16");

  fill_fmnist(&cfg); /* a stride-1 stage that does not widen */
  cfg.space.stage_channels[2] = 96;
  EXPECT_INIT_ERROR(t, &cfg, "space.stage_channels[2]", "96");

  fill_fmnist(&cfg);
  cfg.space.stage_channels[2] = 64;
  EXPECT_INIT_ERROR(t, &cfg, "space.stage_channels[2]", "64");

  fill_fmnist(&cfg);
  cfg.space.stage_blocks[0] = cfg.space.stage_blocks[1] = cfg.space.stage_blocks[2] = 22;
  EXPECT_INIT_ERROR(t, &cfg, "space.stage_blocks", "64");

  fill_fmnist(&cfg);
  cfg.space.n_scales = HSC_MAX_SCALES + 1;
  for (int i = 0; i < cfg.space.n_scales; i++) cfg.space.scales[i] = 0.1 * (i + 1);
  EXPECT_INIT_ERROR(t, &cfg, "space.scales");

  fill_fmnist(&cfg);
  cfg.space.scales[3] = 0.5;
  EXPECT_INIT_ERROR(t, &cfg, "space.scales[3]", "increasing");

  fill_fmnist(&cfg);
  cfg.space.n_stage_strides = 2;
  EXPECT_INIT_ERROR(t, &cfg, "space.stage_strides", "space.stage_channels");

  fill_fmnist(&cfg);
  cfg.space.stage_strides[1] = 3;
  EXPECT_INIT_ERROR(t, &cfg, "space.stage_strides[1]");

  fill_fmnist(&cfg);
  cfg.space.input_size = 0;
  EXPECT_INIT_ERROR(t, &cfg, "space.input_size");

  fill_fmnist(&cfg);
  cfg.space.n_ops = 0;
  EXPECT_INIT_ERROR(t, &cfg, "space.ops");

  /* The space hash names the space: equal configs agree, any derived change differs. */
  hsc_space a, b;
  hsc_error err = {0};
  fill_fmnist(&cfg);
  T_REQUIRE(t, hsc_space_init(&a, &cfg, &err) == HSC_OK);
  T_REQUIRE(t, hsc_space_init(&b, &cfg, &err) == HSC_OK);
  T_CHECK(t, a.hash == b.hash);
  cfg.space.scales[9] = 2.2;
  T_REQUIRE(t, hsc_space_init(&b, &cfg, &err) == HSC_OK);
  T_CHECK(t, a.hash != b.hash);
  fill_fmnist(&cfg);
  snprintf(cfg.space.ops[0], sizeof cfg.space.ops[0], "shuffle5");
  snprintf(cfg.space.ops[1], sizeof cfg.space.ops[1], "shuffle3");
  T_REQUIRE(t, hsc_space_init(&b, &cfg, &err) == HSC_OK);
  T_CHECK(t, a.hash != b.hash);
  fill_fmnist(&cfg);
  cfg.space.input_size = 32;
  T_REQUIRE(t, hsc_space_init(&b, &cfg, &err) == HSC_OK);
  T_CHECK(t, a.hash != b.hash);
}

static void t_format_parse(hsc_test *t) {
  hsc_space s;
  T_REQUIRE(t, init_fmnist(t, &s));
  hsc_rng r;
  hsc_rng_init(&r, 7, HSC_RNG_TEST, 1);
  hsc_error err = {0};
  for (int i = 0; i < 1000; i++) {
    hsc_arch a, b;
    char text[1024], again[1024];
    hsc_arch_sample(&s, NULL, &r, &a);
    int n = hsc_arch_format(&s, &a, text, sizeof text);
    T_REQUIRE(t, n > 0 && (size_t)n < sizeof text && (size_t)n == strlen(text));
    if (hsc_arch_parse(&s, text, &b, &err) != HSC_OK) {
      T_FAIL(t, "'%s': %s", text, err.msg);
      return;
    }
    T_REQUIRE(t, hsc_arch_equal(&a, &b));
    hsc_arch_format(&s, &b, again, sizeof again);
    T_REQUIRE(t, !strcmp(text, again));
  }
  /* The exact text and snprintf semantics. */
  hsc_arch u;
  char buf[256];
  hsc_arch_uniform(&s, HSC_OP_XCEPTION, 4, &u);
  const char *want =
      "xception:1.0,xception:1.0,xception:1.0,xception:1.0,xception:1.0,xception:1.0,"
      "xception:1.0,xception:1.0";
  T_EQ_INT(t, hsc_arch_format(&s, &u, buf, sizeof buf), strlen(want));
  T_CHECK(t, !strcmp(buf, want));
  T_EQ_INT(t, hsc_arch_format(&s, &u, buf, 10), strlen(want));
  T_CHECK(t, !strcmp(buf, "xception:"));
  T_EQ_INT(t, hsc_arch_format(&s, &u, NULL, 0), strlen(want));
}

/* A scale that %.1f does not hold prints with %g. */
static void t_format_scales(hsc_test *t) {
  static const int channels[] = {8}, blocks[] = {2}, strides[] = {1};
  static const double scales[] = {0.25, 1.0 / 3, 1.5, 2.0};
  hsc_config cfg;
  hsc_error err = {0};
  hsc_space s;
  fill_space(&cfg, &(space_keys){.in_c = 1,
                                 .in_size = 4,
                                 .stem_c = 4,
                                 .stem_stride = 1,
                                 .nstages = 1,
                                 .channels = channels,
                                 .blocks = blocks,
                                 .strides = strides,
                                 .head_c = 8,
                                 .classes = 2,
                                 .nops = 2,
                                 .ops = ALL_OPS + 2,
                                 .nscales = 4,
                                 .scales = scales});
  T_REQUIRE(t, hsc_space_init(&s, &cfg, &err) == HSC_OK);
  hsc_arch a = {.nblocks = 2, .op = {HSC_OP_SHUFFLE7, HSC_OP_XCEPTION}, .scale = {0, 1}}, b;
  char buf[256];
  hsc_arch_format(&s, &a, buf, sizeof buf);
  T_CHECK(t, !strcmp(buf, "shuffle7:0.25,xception:0.3333333333333333"));
  T_REQUIRE(t, hsc_arch_parse(&s, buf, &b, &err) == HSC_OK);
  T_CHECK(t, hsc_arch_equal(&a, &b));
  a.scale[0] = 2;
  a.scale[1] = 3;
  hsc_arch_format(&s, &a, buf, sizeof buf);
  T_CHECK(t, !strcmp(buf, "shuffle7:1.5,xception:2.0"));
  /* An operator of the known set that this space leaves out. */
  T_CHECK(t, hsc_arch_parse(&s, "shuffle3:1.5,xception:2.0", &b, &err) == HSC_ERR_INPUT);
  T_CHECK(t, strstr(err.msg,
                    "gene 0 'shuffle3:1.5': operator 'shuffle3' is not in space.ops (shuffle7, "
                    "xception)") != NULL);
}

static void t_parse_forms(hsc_test *t) {
  hsc_space s;
  T_REQUIRE(t, init_fmnist(t, &s));
  hsc_arch want = {.nblocks = 8,
                   .op = {HSC_OP_SHUFFLE3, HSC_OP_XCEPTION, HSC_OP_SHUFFLE5, HSC_OP_SHUFFLE7, HSC_OP_SHUFFLE3,
                          HSC_OP_SHUFFLE3, HSC_OP_XCEPTION, HSC_OP_SHUFFLE7},
                   .scale = {4, 2, 0, 9, 4, 5, 1, 8}};
  static const char *const forms[] = {
      "shuffle3:1.0,xception:0.6,shuffle5:0.2,shuffle7:2.0,shuffle3:1.0,shuffle3:1.2,xception:0.4,shuffle7:1."
      "8",
      "shuffle3:1.0 , xception:0.6,shuffle5:0.2 ,shuffle7:2.0,  shuffle3:1.0,shuffle3:1.2,xception:0.4,"
      "shuffle7:1.8\n",
      "[shuffle3:1.0, xception:0.6, shuffle5:0.2, shuffle7:2.0, shuffle3:1.0, shuffle3:1.2, xception:0.4, "
      "shuffle7:1.8]",
      "  [shuffle3:1, xception:0.60, shuffle5:.2, shuffle7:2, shuffle3:1.0, shuffle3:1.2,\n"
      "   xception:0.4, shuffle7:1.8,]  ",
      "- shuffle3:1.0\n- xception:0.6\n- shuffle5:0.2\n- shuffle7:2.0\n\n- shuffle3:1.0\n- shuffle3:1.2\n"
      "- xception:0.4\n- shuffle7:1.8\n",
      "arch:  # comment\n  - shuffle3:1.0\n  - 'xception:0.6'\n  - \"shuffle5:0.2\"\n  - shuffle7 : 2.0\n"
      "  - shuffle3:1.0   # a comment\n  - shuffle3:1.2\n  - xception:0.4\n  - shuffle7:1.8\n",
      "arch: [shuffle3:1.0, xception:0.6, shuffle5:0.2, shuffle7:2.0, shuffle3:1.0, shuffle3:1.2, "
      "xception:0.4, shuffle7:1.8]",
  };
  for (size_t i = 0; i < ARRAY_LEN(forms); i++) {
    hsc_arch a;
    hsc_error err = {0};
    if (hsc_arch_parse(&s, forms[i], &a, &err) != HSC_OK)
      T_FAIL(t, "form %zu: %s", i, err.msg);
    else if (!hsc_arch_equal(&a, &want))
      T_FAIL(t, "form %zu parsed to other genes", i);
  }
  /* What hsc_arch_write_yaml writes parses back, and carries hash, flops and params. */
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  T_REQUIRE(t, f != NULL);
  hsc_arch_write_yaml(&s, &want, f);
  T_REQUIRE(t, fclose(f) == 0);
  hsc_arch a;
  hsc_error err = {0};
  if (hsc_arch_parse(&s, text, &a, &err) != HSC_OK)
    T_FAIL(t, "write_yaml output: %s\n%s", err.msg, text);
  else
    T_CHECK(t, hsc_arch_equal(&a, &want));
  char line[128];
  snprintf(line, sizeof line, "%016" PRIx64, hsc_arch_hash(&s, &want));
  T_CHECK(t, strstr(text, line) != NULL);
  snprintf(line, sizeof line, "# flops: %" PRId64, hsc_arch_flops(&s, &want));
  T_CHECK(t, strstr(text, line) != NULL);
  snprintf(line, sizeof line, "# params: %" PRId64 "\n", hsc_arch_params(&s, &want));
  T_CHECK(t, strstr(text, line) != NULL);
  T_CHECK(t, strstr(text, "arch:\n  - shuffle3:1.0\n  - xception:0.6\n") != NULL);
  free(text);
}

static void expect_parse_error(hsc_test *t, int line, const hsc_space *s, const char *text,
                               const char *want) {
  hsc_arch a;
  hsc_error err = {0};
  hsc_status st = hsc_arch_parse(s, text, &a, &err);
  if (st != HSC_ERR_INPUT)
    hsc_test_fail_at(t, __FILE__, line, "'%s': status %d, expected HSC_ERR_INPUT", text, st);
  else if (!strstr(err.msg, want))
    hsc_test_fail_at(t, __FILE__, line, "'%s': message '%s' lacks '%s'", text, err.msg, want);
}
#define EXPECT_PARSE_ERROR(t, s, text, want) expect_parse_error((t), __LINE__, (s), (text), (want))

static void t_parse_errors(hsc_test *t) {
  hsc_space s;
  T_REQUIRE(t, init_fmnist(t, &s));
  EXPECT_PARSE_ERROR(t, &s,
                     "shuffle3:1.0,shuffle3:1.0,shuffle3:1.0,shufle3:1.0,shuffle3:1.0,shuffle3:1.0,"
                     "shuffle3:1.0,shuffle3:1.0",
                     "gene 3 'shufle3:1.0': unknown operator 'shufle3' (expected shuffle3, shuffle5, "
                     "shuffle7, xception)");
  EXPECT_PARSE_ERROR(t, &s,
                     "shuffle3:1.0,shuffle3:1.0,shuffle3:1.0,shuffle3:1.0,shuffle3:1.0,shuffle3:0.7,"
                     "shuffle3:1.0,shuffle3:1.0",
                     "gene 5: scale 0.7 is not in space.scales");
  EXPECT_PARSE_ERROR(t, &s,
                     "shuffle3:1.0,shuffle3:1.0,shuffle3:1.0,shuffle3:1.0,shuffle3:1.0,shuffle3:1.0,"
                     "shuffle3:1.0",
                     "architecture has 7 genes, the space has 8 blocks");
  EXPECT_PARSE_ERROR(t, &s, "", "architecture has 0 genes, the space has 8 blocks");
  EXPECT_PARSE_ERROR(t, &s,
                     "shuffle3:1.0,shuffle3:1.0,shuffle3:1.0,shuffle3:1.0,shuffle3:1.0,shuffle3:1.0,"
                     "shuffle3:1.0,shuffle3:1.0,shuffle3:1.0",
                     "architecture has 9 genes, the space has 8 blocks");
  EXPECT_PARSE_ERROR(t, &s,
                     "shuffle3:1.0,shuffle3,shuffle3:1.0,shuffle3:1.0,shuffle3:1.0,shuffle3:1.0,"
                     "shuffle3:1.0,shuffle3:1.0",
                     "gene 1 'shuffle3': expected OPERATOR:SCALE");
  EXPECT_PARSE_ERROR(t, &s,
                     "shuffle3:1.0,shuffle3:1.0,shuffle3:x,shuffle3:1.0,shuffle3:1.0,shuffle3:1.0,"
                     "shuffle3:1.0,shuffle3:1.0",
                     "gene 2 'shuffle3:x': scale 'x' is not a number");
  EXPECT_PARSE_ERROR(t, &s, "[shuffle3:1.0, shuffle3:1.0", "'[' without a closing ']'");
  /* A failed parse leaves the output alone. */
  hsc_arch a, before;
  hsc_arch_uniform(&s, HSC_OP_SHUFFLE5, 3, &a);
  before = a;
  hsc_error err = {0};
  T_CHECK(t, hsc_arch_parse(&s,
                            "shuffle3:1.0,shuffle3:1.0,shuffle3:1.0,shuffle3:1.0,shuffle3:1.0,shuffle3:1.0,"
                            "shuffle3:1.0,shuffle3:9.0",
                            &a, &err) == HSC_ERR_INPUT);
  T_CHECK(t, hsc_arch_equal(&a, &before));
}

/* FNV-1a 64 written out once more, for the definition: (op, scale bits), each 8 bytes LSB first. */
static uint64_t fnv_pairs(const int *ops, const double *scales, int n) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (int i = 0; i < n; i++) {
    uint64_t words[2] = {(uint64_t)ops[i], 0};
    memcpy(&words[1], &scales[i], 8);
    for (int w = 0; w < 2; w++)
      for (int b = 0; b < 8; b++) {
        h ^= (words[w] >> (8 * b)) & 0xff;
        h *= 0x100000001b3ULL;
      }
  }
  return h;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static void t_hash(hsc_test *t) {
  hsc_space s;
  T_REQUIRE(t, init_fmnist(t, &s));
  hsc_arch a = {.nblocks = 8, .op = {0, 3, 1, 2, 0, 0, 3, 2}, .scale = {4, 2, 0, 9, 4, 5, 1, 8}};
  int ops[8];
  double scales[8];
  for (int l = 0; l < 8; l++) {
    ops[l] = a.op[l];
    scales[l] = s.scales[a.scale[l]];
  }
  T_CHECK(t, hsc_arch_hash(&s, &a) == fnv_pairs(ops, scales, 8));
  T_CHECK(t, hsc_arch_hash(&s, &a) == hsc_arch_hash(&s, &a));

  /* Values, not indices: the same genes in a space whose scale list grew hash the same. */
  hsc_config cfg;
  hsc_space grown;
  hsc_error err = {0};
  fill_fmnist(&cfg);
  static const double more[] = {0.1, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0};
  cfg.space.n_scales = (int)ARRAY_LEN(more);
  memcpy(cfg.space.scales, more, sizeof more);
  T_REQUIRE(t, hsc_space_init(&grown, &cfg, &err) == HSC_OK);
  hsc_arch b;
  char text[512];
  hsc_arch_format(&s, &a, text, sizeof text);
  T_REQUIRE(t, hsc_arch_parse(&grown, text, &b, &err) == HSC_OK);
  T_CHECK(t, !hsc_arch_equal(&a, &b)); /* other indices */
  T_CHECK(t, hsc_arch_hash(&s, &a) == hsc_arch_hash(&grown, &b));

  /* No collisions among 10000 random architectures (distinct ones). */
  enum { N = 10000 };
  hsc_arch *archs = hsc_xmalloc(N * sizeof *archs);
  uint64_t *h = hsc_xmalloc(N * sizeof *h);
  hsc_rng r;
  hsc_rng_init(&r, 3, HSC_RNG_TEST, 2);
  for (int i = 0; i < N; i++) {
    hsc_arch_sample(&s, NULL, &r, &archs[i]);
    h[i] = hsc_arch_hash(&s, &archs[i]);
  }
  qsort(h, N, sizeof *h, cmp_u64);
  int dup = 0;
  for (int i = 1; i < N; i++) dup += h[i] == h[i - 1];
  /* 40^8 architectures: a repeated one among 10000 has probability ~1e-5; this seed has none. */
  T_EQ_INT(t, dup, 0);
  a = archs[0];
  b = a;
  T_CHECK(t, hsc_arch_equal(&a, &b));
  b.scale[7] = (uint8_t)((b.scale[7] + 1) % 10);
  T_CHECK(t, !hsc_arch_equal(&a, &b));
  T_CHECK(t, hsc_arch_hash(&s, &a) != hsc_arch_hash(&s, &b));
  b = a;
  b.op[0] = (uint8_t)((b.op[0] + 1) % 4);
  T_CHECK(t, hsc_arch_hash(&s, &a) != hsc_arch_hash(&s, &b));
  free(archs);
  free(h);
}

/* Pearson's statistic of counts against a uniform expectation. */
static double chi_square(const int *count, int n, int total) {
  double e = (double)total / n, x = 0;
  for (int i = 0; i < n; i++) x += (count[i] - e) * (count[i] - e) / e;
  return x;
}

/* A loose bound: df + 8 sqrt(2 df) is far in the tail (p < 1e-9 for these df). */
static double chi_bound(int df) { return df + 8 * sqrt(2.0 * df); }

static void t_sampling(hsc_test *t) {
  enum { N = 20000 };
  hsc_space s;
  T_REQUIRE(t, init_fmnist(t, &s));
  hsc_space_mask m;
  hsc_space_mask_full(&s, &m);
  /* Shrunk choices: block 0 without shuffle5, block 3 without scales 0..4, block 7 xception only. */
  m.op[0][HSC_OP_SHUFFLE5] = 0;
  for (int j = 0; j < 5; j++) m.scale[3][j] = 0;
  m.op[7][HSC_OP_SHUFFLE3] = m.op[7][HSC_OP_SHUFFLE5] = m.op[7][HSC_OP_SHUFFLE7] = 0;
  for (int masked = 0; masked < 2; masked++) {
    const hsc_space_mask *mk = masked ? &m : NULL;
    static int ops[HSC_MAX_BLOCKS][HSC_OP_COUNT], scales[HSC_MAX_BLOCKS][HSC_MAX_SCALES];
    memset(ops, 0, sizeof ops);
    memset(scales, 0, sizeof scales);
    hsc_rng r;
    hsc_rng_init(&r, 11, HSC_RNG_TEST, (uint64_t)masked);
    for (int i = 0; i < N; i++) {
      hsc_arch a;
      hsc_arch_sample(&s, mk, &r, &a);
      T_REQUIRE(t, hsc_arch_valid(&s, mk, &a));
      for (int l = 0; l < s.nblocks; l++) {
        ops[l][a.op[l]]++;
        scales[l][a.scale[l]]++;
      }
    }
    for (int l = 0; l < s.nblocks; l++) {
      int allowed_ops[HSC_OP_COUNT], nops = 0, allowed_scales[HSC_MAX_SCALES], nsc = 0;
      for (int o = 0; o < HSC_OP_COUNT; o++) {
        if (!mk || mk->op[l][o])
          allowed_ops[nops++] = ops[l][o];
        else if (ops[l][o])
          T_FAIL(t, "block %d: masked op %d sampled %d times", l, o, ops[l][o]);
      }
      for (int j = 0; j < s.nscales; j++) {
        if (!mk || mk->scale[l][j])
          allowed_scales[nsc++] = scales[l][j];
        else if (scales[l][j])
          T_FAIL(t, "block %d: masked scale %d sampled %d times", l, j, scales[l][j]);
      }
      if (nops > 1 && chi_square(allowed_ops, nops, N) > chi_bound(nops - 1))
        T_FAIL(t, "block %d ops (mask %d): chi-square %.1f over %d choices", l, masked,
               chi_square(allowed_ops, nops, N), nops);
      if (nops == 1) T_EQ_INT(t, allowed_ops[0], N);
      if (chi_square(allowed_scales, nsc, N) > chi_bound(nsc - 1))
        T_FAIL(t, "block %d scales (mask %d): chi-square %.1f over %d choices", l, masked,
               chi_square(allowed_scales, nsc, N), nsc);
    }
  }
  /* The same stream gives the same architecture. */
  hsc_rng r1, r2;
  hsc_arch a1, a2;
  hsc_rng_init(&r1, 5, HSC_RNG_PATH, 123);
  hsc_rng_init(&r2, 5, HSC_RNG_PATH, 123);
  hsc_arch_sample(&s, &m, &r1, &a1);
  hsc_arch_sample(&s, &m, &r2, &a2);
  T_CHECK(t, hsc_arch_equal(&a1, &a2));
  /* Validity: mask, operator outside the space, scale index out of range, block count. */
  hsc_arch u;
  hsc_arch_uniform(&s, HSC_OP_SHUFFLE5, 9, &u);
  T_CHECK(t, hsc_arch_valid(&s, NULL, &u));
  T_CHECK(t, !hsc_arch_valid(&s, &m, &u)); /* block 0 lost shuffle5 */
  u.op[0] = HSC_OP_COUNT;
  T_CHECK(t, !hsc_arch_valid(&s, NULL, &u));
  hsc_arch_uniform(&s, HSC_OP_SHUFFLE5, 9, &u);
  u.scale[2] = 10;
  T_CHECK(t, !hsc_arch_valid(&s, NULL, &u));
  hsc_arch_uniform(&s, HSC_OP_SHUFFLE5, 9, &u);
  u.nblocks = 7;
  T_CHECK(t, !hsc_arch_valid(&s, NULL, &u));
  /* Uniform: every gene the same. */
  hsc_arch_uniform(&s, HSC_OP_SHUFFLE7, 2, &u);
  T_EQ_INT(t, u.nblocks, 8);
  for (int l = 0; l < 8; l++) {
    T_EQ_INT(t, u.op[l], HSC_OP_SHUFFLE7);
    T_EQ_INT(t, u.scale[l], 2);
  }
}

/* A small space counted by hand: 1x8x8 input, stem 4, one stage of two blocks to width 8 at stride 2,
 * head 16, 3 classes, scales 0.5 and 1.0; architecture shuffle3:1.0, xception:0.5.
 *   stem 1->4 3x3 at 8x8:                  4*64*9 = 2304 MACs; 36 + 8 params
 *   block 0 (4 -> 8, 8x8 -> 4x4, mid 4, main 4 -> 4, proj on 4):
 *     pw1 4->4 at 8x8 4*64*4 = 1024; dw 3x3 at 4x4 4*16*9 = 576; pw2 4->4 4*16*4 = 256;
 *     proj dw 4*16*9 = 576; proj pw 4*16*4 = 256                      -> 2688; 24+44+24+44+24 = 160
 *   block 1 (8 -> 8 at 4x4, main 4 -> 4, mid 2):
 *     dw1 4*16*9 = 576; pw1 2*16*4 = 128; dw2 2*16*9 = 288; pw2 2*16*2 = 64; dw3 288; pw3 4*16*2 = 128
 *                                                                      -> 1472; 44+12+22+8+22+16 = 124
 *   head 8->16 at 4x4: 16*16*8 = 2048; 128 + 32.  classifier 16*3 = 48; 48.
 * Total 8560 MACs, 536 parameters. */
static void t_flops_by_hand(hsc_test *t) {
  static const int channels[] = {8}, blocks[] = {2}, strides[] = {2};
  static const double scales[] = {0.5, 1.0};
  hsc_config cfg;
  hsc_error err = {0};
  hsc_space s;
  fill_space(&cfg, &(space_keys){.in_c = 1,
                                 .in_size = 8,
                                 .stem_c = 4,
                                 .stem_stride = 1,
                                 .nstages = 1,
                                 .channels = channels,
                                 .blocks = blocks,
                                 .strides = strides,
                                 .head_c = 16,
                                 .classes = 3,
                                 .nops = 4,
                                 .ops = ALL_OPS,
                                 .nscales = 2,
                                 .scales = scales});
  T_REQUIRE(t, hsc_space_init(&s, &cfg, &err) == HSC_OK);
  hsc_arch a;
  T_REQUIRE(t, hsc_arch_parse(&s, "shuffle3:1.0,xception:0.5", &a, &err) == HSC_OK);
  T_EQ_INT(t, hsc_arch_flops(&s, &a), 8560);
  T_EQ_INT(t, hsc_arch_params(&s, &a), 536);
}

/* --- against torch --- */

typedef struct {
  char **arch;
  int64_t *flops, *params;
  int n;
} ref_space;

static herr_t h5_walk(unsigned n, const H5E_error2_t *e, void *data) {
  if (n == 0) snprintf(data, 256, "%s (in %s)", e->desc ? e->desc : "no description", e->func_name);
  return 0;
}

static void h5_fail_at(hsc_test *t, int line, const char *call, const char *path, const char *what) {
  char msg[256] = "HDF5 reported no error";
  if (H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, h5_walk, msg) < 0) snprintf(msg, sizeof msg, "unreadable stack");
  hsc_test_fail_at(t, __FILE__, line, "%s/%s: %s failed: %s", path, what, call, msg);
}

/* Evaluates `call` once; a negative result fails the case with HDF5's message and jumps to `done`. */
#define H5_TRY(call, what)                          \
  do {                                              \
    if ((call) < 0) {                               \
      h5_fail_at(t, __LINE__, #call, path, (what)); \
      goto done;                                    \
    }                                               \
  } while (0)

static void ref_space_free(ref_space *r) {
  if (r->arch)
    for (int i = 0; i < r->n; i++)
      if (r->arch[i]) H5free_memory(r->arch[i]);
  free(r->arch);
  free(r->flops);
  free(r->params);
  memset(r, 0, sizeof *r);
}

/* Group `name`: arch (vlen str), flops and params (int64), all of one length. Returns 1 on success. */
static int ref_read(hsc_test *t, hid_t f, const char *path, const char *name, ref_space *r) {
  char ds[3][64];
  hid_t d = H5I_INVALID_HID, sp = H5I_INVALID_HID, ft = H5I_INVALID_HID, mt = H5I_INVALID_HID;
  hssize_t n = 0;
  htri_t variable;
  H5T_cset_t cset;
  int ok = 0;
  memset(r, 0, sizeof *r);
  snprintf(ds[0], sizeof ds[0], "%s/arch", name);
  snprintf(ds[1], sizeof ds[1], "%s/flops", name);
  snprintf(ds[2], sizeof ds[2], "%s/params", name);
  H5_TRY(d = H5Dopen2(f, ds[0], H5P_DEFAULT), ds[0]);
  H5_TRY(sp = H5Dget_space(d), ds[0]);
  H5_TRY(n = H5Sget_simple_extent_npoints(sp), ds[0]);
  H5_TRY(ft = H5Dget_type(d), ds[0]);
  H5_TRY(variable = H5Tis_variable_str(ft), ds[0]);
  if (!variable || n < 1) {
    T_FAIL(t, "%s/%s: expected variable-length strings (%lld)", path, ds[0], (long long)n);
    goto done;
  }
  H5_TRY(cset = H5Tget_cset(ft), ds[0]);
  H5_TRY(mt = H5Tcopy(H5T_C_S1), ds[0]);
  H5_TRY(H5Tset_size(mt, H5T_VARIABLE), ds[0]);
  H5_TRY(H5Tset_cset(mt, cset), ds[0]);
  r->n = (int)n;
  r->arch = hsc_xcalloc((size_t)n, sizeof *r->arch);
  r->flops = hsc_xmalloc((size_t)n * sizeof *r->flops);
  r->params = hsc_xmalloc((size_t)n * sizeof *r->params);
  H5_TRY(H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, r->arch), ds[0]);
  H5_TRY(H5Sclose(sp), ds[0]);
  sp = H5I_INVALID_HID;
  H5_TRY(H5Dclose(d), ds[0]);
  d = H5I_INVALID_HID;
  for (int k = 1; k < 3; k++) {
    hssize_t m;
    H5_TRY(d = H5Dopen2(f, ds[k], H5P_DEFAULT), ds[k]);
    H5_TRY(sp = H5Dget_space(d), ds[k]);
    H5_TRY(m = H5Sget_simple_extent_npoints(sp), ds[k]);
    if (m != n) {
      T_FAIL(t, "%s/%s: %lld values for %lld architectures", path, ds[k], (long long)m, (long long)n);
      goto done;
    }
    H5_TRY(H5Dread(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, k == 1 ? r->flops : r->params), ds[k]);
    H5_TRY(H5Sclose(sp), ds[k]);
    sp = H5I_INVALID_HID;
    H5_TRY(H5Dclose(d), ds[k]);
    d = H5I_INVALID_HID;
  }
  ok = 1;
done:
  if (mt >= 0 && H5Tclose(mt) < 0) h5_fail_at(t, __LINE__, "H5Tclose", path, ds[0]), ok = 0;
  if (ft >= 0 && H5Tclose(ft) < 0) h5_fail_at(t, __LINE__, "H5Tclose", path, ds[0]), ok = 0;
  if (sp >= 0 && H5Sclose(sp) < 0) h5_fail_at(t, __LINE__, "H5Sclose", path, name), ok = 0;
  if (d >= 0 && H5Dclose(d) < 0) h5_fail_at(t, __LINE__, "H5Dclose", path, name), ok = 0;
  if (!ok) ref_space_free(r);
  return ok;
}

static void t_torch_counts(hsc_test *t) {
  const char *dir = getenv("HSC_REF_DIR");
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", dir && *dir ? dir : "build/ref", REF_FILE);
  if (access(path, F_OK) != 0)
    T_SKIP(t, "%s is missing; `make %s` generates it (tests/ref/space_ref.py, torch)", path, path);
  hid_t f = H5I_INVALID_HID;
  H5_TRY(H5Eset_auto2(H5E_DEFAULT, NULL, NULL), "error printing");
  H5_TRY(f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT), "file");
  static const struct {
    const char *name;
    void (*fill)(hsc_config *);
  } spaces[] = {{"fmnist", fill_fmnist}, {"imagenet", fill_imagenet}};
  for (size_t k = 0; k < ARRAY_LEN(spaces); k++) {
    hsc_config cfg;
    hsc_space s;
    hsc_error err = {0};
    spaces[k].fill(&cfg);
    T_REQUIRE(t, hsc_space_init(&s, &cfg, &err) == HSC_OK);
    ref_space r;
    if (!ref_read(t, f, path, spaces[k].name, &r)) continue;
    T_CHECK(t, r.n >= 8);
    for (int i = 0; i < r.n; i++) {
      hsc_arch a;
      char text[2048];
      if (hsc_arch_parse(&s, r.arch[i], &a, &err) != HSC_OK) {
        T_FAIL(t, "%s %d: %s", spaces[k].name, i, err.msg);
        continue;
      }
      hsc_arch_format(&s, &a, text, sizeof text);
      if (strcmp(text, r.arch[i]))
        T_FAIL(t, "%s %d: formats as '%s', torch wrote '%s'", spaces[k].name, i, text, r.arch[i]);
      int64_t flops = hsc_arch_flops(&s, &a), params = hsc_arch_params(&s, &a);
      if (flops != r.flops[i] || params != r.params[i])
        T_FAIL(t, "%s '%s': flops %" PRId64 " params %" PRId64 ", torch %" PRId64 " and %" PRId64,
               spaces[k].name, r.arch[i], flops, params, r.flops[i], r.params[i]);
      if (t->verbose)
        fprintf(stderr, "  %s %.40s: %" PRId64 " FLOPs, %" PRId64 " params\n", spaces[k].name, r.arch[i],
                flops, params);
    }
    ref_space_free(&r);
  }
done:
  if (f >= 0 && H5Fclose(f) < 0) h5_fail_at(t, __LINE__, "H5Fclose", path, "file");
}

int main(int argc, char **argv) {
  static const hsc_test_case cases[] = {
      {"op_table", t_op_table},
      {"shapes_fmnist", t_shapes_fmnist},
      {"shapes_imagenet", t_shapes_imagenet},
      {"mid_rounding", t_mid_rounding},
      {"init_errors", t_init_errors},
      {"format_parse", t_format_parse},
      {"format_scales", t_format_scales},
      {"parse_forms", t_parse_forms},
      {"parse_errors", t_parse_errors},
      {"hash", t_hash},
      {"sampling", t_sampling},
      {"flops_by_hand", t_flops_by_hand},
      {"torch_counts", t_torch_counts},
  };
  return hsc_test_main("test_space", argc, argv, cases, (int)ARRAY_LEN(cases));
}
