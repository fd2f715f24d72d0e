/* Configuration: the schema covers hsc_config, defaults, both shipped configs, nested and dotted keys,
 * every parse error with its file:line:column and key, --set, validation, dump round trips, the hash and
 * the collective load. Runs as a plain program (MPI initialised here, one rank) or under mpirun. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "hsconas/config.h"

/* Configurations compare byte for byte: hsc_config_defaults zeroes the struct (padding included) and the
 * parser zero-fills strings and unused list items. */
static int cfg_equal(const hsc_config *a, const hsc_config *b) { return !memcmp(a, b, sizeof *a); }

/* Names the first key whose bytes differ (for failure messages). */
static const char *first_difference(const hsc_config *a, const hsc_config *b) {
  size_t n;
  const hsc_cfg_key *keys = hsc_config_schema(&n);
  for (size_t i = 0; i < n; i++) {
    if (memcmp((const char *)a + keys[i].offset, (const char *)b + keys[i].offset, keys[i].size))
      return keys[i].key;
    if (keys[i].type >= HSC_CFG_INT_LIST &&
        memcmp((const char *)a + keys[i].count_offset, (const char *)b + keys[i].count_offset, sizeof(int)))
      return keys[i].key;
  }
  return "(padding)";
}

#define T_CFG_EQUAL(t, a, b)                                                                          \
  do {                                                                                                \
    if (!cfg_equal((a), (b))) T_FAIL((t), "configurations differ at %s", first_difference((a), (b))); \
  } while (0)

/* A temporary file holding text; the caller unlinks it. */
static int write_temp(const char *text, char path[64]) {
  snprintf(path, 64, "/tmp/hsc_test_config_XXXXXX");
  int fd = mkstemp(path);
  if (fd < 0) return -1;
  size_t len = strlen(text), done = 0;
  while (done < len) {
    ssize_t w = write(fd, text + done, len - done);
    if (w <= 0) {
      close(fd);
      unlink(path);
      return -1;
    }
    done += (size_t)w;
  }
  return close(fd);
}

/* Loads text from a temporary file on MPI_COMM_SELF; the file's path goes to path. */
static hsc_status load_text(const char *text, hsc_config *cfg, hsc_error *err, char path[64]) {
  if (write_temp(text, path)) {
    hsc_error_set(err, HSC_ERR_IO, "cannot write a temporary file: %s", strerror(errno));
    return HSC_ERR_IO;
  }
  hsc_status st = hsc_config_load(cfg, path, NULL, 0, MPI_COMM_SELF, err);
  unlink(path);
  return st;
}

static hsc_status parse_str(hsc_config *cfg, const char *text, hsc_error *err) {
  return hsc_config_parse(cfg, text, strlen(text), "t.yaml", err);
}

/* The schema covers every byte of hsc_config that is not padding, exactly once, and its entries are
 * well formed. */
static void t_schema_covers_struct(hsc_test *t) {
  size_t n;
  const hsc_cfg_key *keys = hsc_config_schema(&n);
  unsigned char owner[sizeof(hsc_config)] = {0};
  for (size_t i = 0; i < n; i++) {
    const hsc_cfg_key *k = &keys[i];
    T_CHECK(t, hsc_config_find(k->key) == k);
    T_CHECK(t, k->help && k->help[0]);
    T_CHECK(t, k->def != NULL);
    /* Two levels: "section.name"; sections are contiguous so the dump writes each once. */
    const char *dot = strchr(k->key, '.');
    T_REQUIRE(t, dot && dot != k->key && dot[1] && !strchr(dot + 1, '.'));
    if (i > 0) {
      size_t len = (size_t)(dot - k->key);
      int same = !strncmp(keys[i - 1].key, k->key, len + 1);
      for (size_t j = 0; j + 1 < i && !same; j++)
        if (!strncmp(keys[j].key, k->key, len + 1)) T_FAIL(t, "section of %s is split in the table", k->key);
    }
    size_t want = 0;
    switch (k->type) {
      case HSC_CFG_INT:
      case HSC_CFG_BOOL:
        want = sizeof(int);
        break;
      case HSC_CFG_INT64:
        want = sizeof(int64_t);
        break;
      case HSC_CFG_FLOAT:
        want = sizeof(double);
        break;
      case HSC_CFG_STRING:
      case HSC_CFG_ENUM:
        want = k->size;
        break;
      case HSC_CFG_INT_LIST:
        want = HSC_CFG_MAX_LIST * sizeof(int);
        break;
      case HSC_CFG_FLOAT_LIST:
        want = HSC_CFG_MAX_LIST * sizeof(double);
        break;
      case HSC_CFG_ENUM_LIST:
        want = HSC_CFG_MAX_LIST * sizeof(hsc_cfg_name);
        break;
      default:
        T_FAIL(t, "%s: bad type", k->key);
    }
    T_EQ_INT(t, k->size, want);
    if (k->type == HSC_CFG_INT || k->type == HSC_CFG_INT_LIST)
      T_CHECK(t, k->imin >= INT32_MIN && k->imax <= INT32_MAX);
    if (k->type == HSC_CFG_INT || k->type == HSC_CFG_INT64 || k->type == HSC_CFG_INT_LIST)
      T_CHECK(t, k->imin <= k->imax);
    if (k->type == HSC_CFG_FLOAT || k->type == HSC_CFG_FLOAT_LIST) T_CHECK(t, k->fmin < k->fmax);
    if (k->type == HSC_CFG_ENUM || k->type == HSC_CFG_ENUM_LIST) {
      T_REQUIRE(t, k->choices && k->choices[0]);
      for (const char *const *c = k->choices; *c; c++) T_CHECK(t, strlen(*c) < HSC_CFG_NAME);
    }
    T_REQUIRE(t, k->offset + k->size <= sizeof(hsc_config));
    for (size_t b = 0; b < k->size; b++) {
      if (owner[k->offset + b]) T_FAIL(t, "%s overlaps another key at byte %zu", k->key, k->offset + b);
      owner[k->offset + b] = 1;
    }
    if (k->type >= HSC_CFG_INT_LIST) {
      T_REQUIRE(t, k->count_offset + sizeof(int) <= sizeof(hsc_config));
      for (size_t b = 0; b < sizeof(int); b++) {
        if (owner[k->count_offset + b]) T_FAIL(t, "count of %s overlaps another field", k->key);
        owner[k->count_offset + b] = 1;
      }
    }
  }
  /* The compiler knows which bytes are padding: fill with ones, clear the padding, and every byte still
   * set must belong to a key and every cleared one to none. */
#if defined(__has_builtin) && __has_builtin(__builtin_clear_padding)
  hsc_config probe;
  memset(&probe, 0xff, sizeof probe);
  __builtin_clear_padding(&probe);
  const unsigned char *bytes = (const unsigned char *)&probe;
  size_t uncovered = 0, padding_claimed = 0;
  for (size_t b = 0; b < sizeof probe; b++) {
    if (bytes[b] && !owner[b]) uncovered++;
    if (!bytes[b] && owner[b]) padding_claimed++;
  }
  if (uncovered)
    T_FAIL(t, "%zu bytes of hsc_config belong to no schema key: a field without an entry", uncovered);
  T_EQ_INT(t, padding_claimed, 0);
#else
  T_SKIP(t, "the compiler has no __builtin_clear_padding to tell padding from fields");
#endif
}

static void t_defaults(hsc_test *t) {
  hsc_config c;
  hsc_config_defaults(&c);
  T_CHECK(t, !strcmp(c.run.dir, "runs/fmnist"));
  T_EQ_INT(t, c.run.seed, 1);
  T_CHECK(t, !strcmp(c.data.dataset, "fmnist"));
  T_CHECK(t, !strcmp(c.data.path, "/usr/share/datasets/fashion-mnist"));
  T_EQ_INT(t, c.data.batch_size, 128);
  T_EQ_INT(t, c.data.eval_batch_size, 500);
  T_EQ_INT(t, c.data.val_size, 5000);
  T_EQ_INT(t, c.data.split_seed, 0);
  T_EQ_INT(t, c.data.augment, 1);
  T_EQ_INT(t, c.data.crop_pad, 2);
  T_EQ_INT(t, c.data.flip, 1);
  T_EQ_INT(t, c.data.n_mean, 1);
  T_CHECK(t, c.data.mean[0] == 0.2860);
  T_EQ_INT(t, c.data.n_std, 1);
  T_CHECK(t, c.data.std[0] == 0.3530);
  T_EQ_INT(t, c.data.prefetch, 1);
  T_EQ_INT(t, c.space.input_channels, 1);
  T_EQ_INT(t, c.space.input_size, 28);
  T_EQ_INT(t, c.space.stem_channels, 16);
  T_EQ_INT(t, c.space.stem_stride, 1);
  T_EQ_INT(t, c.space.n_stage_channels, 3);
  T_EQ_INT(t, c.space.stage_channels[0], 48);
  T_EQ_INT(t, c.space.stage_channels[2], 192);
  T_EQ_INT(t, c.space.n_stage_blocks, 3);
  T_EQ_INT(t, c.space.stage_blocks[1], 4);
  T_EQ_INT(t, c.space.n_stage_strides, 3);
  T_EQ_INT(t, c.space.stage_strides[2], 1);
  T_EQ_INT(t, c.space.head_channels, 512);
  T_EQ_INT(t, c.space.classes, 10);
  T_EQ_INT(t, c.space.n_ops, 4);
  T_CHECK(t, !strcmp(c.space.ops[0], "shuffle3") && !strcmp(c.space.ops[3], "xception"));
  T_EQ_INT(t, c.space.n_scales, 10);
  T_CHECK(t, c.space.scales[0] == 0.2 && c.space.scales[9] == 2.0);
  T_EQ_INT(t, c.supernet.epochs, 30);
  T_EQ_INT(t, c.supernet.max_steps, 0);
  T_CHECK(t, c.supernet.lr == 0.1);
  T_CHECK(t, !strcmp(c.supernet.lr_schedule, "linear"));
  T_EQ_INT(t, c.supernet.warmup_steps, 0);
  T_CHECK(t, c.supernet.momentum == 0.9);
  T_EQ_INT(t, c.supernet.nesterov, 0);
  T_CHECK(t, c.supernet.weight_decay == 4e-5);
  T_CHECK(t, c.supernet.label_smoothing == 0.1);
  T_CHECK(t, c.supernet.bn_momentum == 0.1);
  T_CHECK(t, c.supernet.bn_eps == 1e-5);
  T_EQ_INT(t, c.supernet.sync_bn, 0);
  T_EQ_INT(t, c.eval.recal_batches, 20);
  T_EQ_INT(t, c.eval.val_images, 0);
  T_EQ_INT(t, c.retrain.epochs, 20);
  T_EQ_INT(t, c.retrain.max_steps, 0);
  T_CHECK(t, c.retrain.lr == 0.1);
  T_CHECK(t, !strcmp(c.retrain.lr_schedule, "cosine"));
  T_EQ_INT(t, c.retrain.warmup_steps, 200);
  T_CHECK(t, c.retrain.momentum == 0.9);
  T_EQ_INT(t, c.retrain.nesterov, 1);
  T_CHECK(t, c.retrain.weight_decay == 5e-4);
  T_CHECK(t, c.retrain.label_smoothing == 0.1);
  T_EQ_INT(t, c.checkpoint.every_steps, 500);
  T_EQ_INT(t, c.checkpoint.keep, 3);
  T_CHECK(t, !strcmp(c.dist.backend, "cpu"));
  T_EQ_INT(t, c.dist.threads, 0);
  T_EQ_INT(t, c.log.every_steps, 50);
  hsc_error err = {0};
  T_EQ_INT(t, hsc_config_validate(&c, 0, &err), HSC_OK);
  T_EQ_INT(t, hsc_config_validate(&c, 4, &err), HSC_OK);
  /* Defaults are deterministic to the byte. */
  hsc_config d;
  hsc_config_defaults(&d);
  T_CFG_EQUAL(t, &c, &d);
}

/* configs/fmnist.yaml is the defaults except for the supernet warm-up and what sizes the pipeline for 15
 * minutes on 2 cores (batch, epochs, evaluation, shrinking, evolution). */
static void t_fmnist_yaml(hsc_test *t) {
  hsc_config c, want;
  hsc_error err = {0};
  hsc_status st = hsc_config_load(&c, "configs/fmnist.yaml", NULL, 0, MPI_COMM_SELF, &err);
  if (st) T_FAIL(t, "%s", err.msg);
  T_REQUIRE(t, st == HSC_OK);
  hsc_config_defaults(&want);
  want.supernet.warmup_steps = 200;
  want.data.batch_size = 120;
  want.supernet.epochs = 5;
  want.eval.recal_batches = 2;
  want.eval.val_images = 1000;
  want.shrink.stages = 1;
  want.shrink.samples = 40;
  want.evolution.population = 20;
  want.evolution.generations = 10;
  want.evolution.topk = 5;
  want.evolution.mutations = 8;
  want.evolution.crossovers = 8;
  T_CFG_EQUAL(t, &c, &want);
  T_EQ_INT(t, c.data.batch_size, 120);
  T_EQ_INT(t, c.supernet.warmup_steps, 200);
  T_CHECK(t, c.supernet.weight_decay == 4e-5);
  T_EQ_INT(t, c.retrain.nesterov, 1);
}

static void t_imagenet_yaml(hsc_test *t) {
  hsc_config c;
  hsc_error err = {0};
  hsc_status st = hsc_config_load(&c, "configs/imagenet.yaml", NULL, 0, MPI_COMM_SELF, &err);
  if (st) T_FAIL(t, "%s", err.msg);
  T_REQUIRE(t, st == HSC_OK);
  T_CHECK(t, !strcmp(c.run.dir, "runs/imagenet"));
  T_EQ_INT(t, c.data.batch_size, 1024);
  T_EQ_INT(t, c.data.n_mean, 3);
  T_CHECK(t, c.data.mean[0] == 0.485 && c.data.mean[1] == 0.456 && c.data.mean[2] == 0.406);
  T_EQ_INT(t, c.data.n_std, 3);
  T_CHECK(t, c.data.std[2] == 0.225);
  T_EQ_INT(t, c.data.crop_pad, 0);
  T_EQ_INT(t, c.space.input_channels, 3);
  T_EQ_INT(t, c.space.input_size, 224);
  T_EQ_INT(t, c.space.stem_stride, 2);
  T_EQ_INT(t, c.space.n_stage_channels, 4);
  T_EQ_INT(t, c.space.stage_channels[3], 640);
  T_EQ_INT(t, c.space.stage_blocks[2], 8);
  T_EQ_INT(t, c.space.stage_strides[3], 2);
  T_EQ_INT(t, c.space.head_channels, 1024);
  T_EQ_INT(t, c.space.classes, 1000);
  T_EQ_INT(t, c.supernet.epochs, 120);
  T_CHECK(t, c.supernet.lr == 0.5);
  T_EQ_INT(t, c.supernet.warmup_steps, 0);
  T_EQ_INT(t, c.retrain.epochs, 20); /* not in the file: the default */
}

/* Nested maps, dotted keys at any level, flow and block forms all give the same struct. */
static void t_nested_and_dotted(hsc_test *t) {
  static const char *const forms[] = {
      "supernet:\n  lr: 0.25\n  bn_eps: 1e-3\nspace:\n  scales: [0.5, 1.0]\n  ops: [xception, shuffle3]\n",
      "supernet.lr: 0.25\nsupernet.bn_eps: 1e-3\nspace.scales: [0.5, 1.0]\nspace.ops: [xception, shuffle3]\n",
      "{supernet: {lr: 0.25, bn_eps: 0.001}, space: {scales: [0.5, 1.0], ops: [xception, shuffle3]}}\n",
      "supernet:\n  lr: 0.25\nsupernet.bn_eps: 1e-3\nspace:\n  scales:\n    - 0.5\n    - 1.0\n  ops:\n"
      "  - xception\n  - shuffle3\n",
      "# a comment\n---\nsupernet: {lr: 0.25}\nsupernet.bn_eps: 0.001 # trailing\nspace: {scales: [.5, 1]}\n"
      "space.ops: [\"xception\", 'shuffle3']\n...\n",
  };
  hsc_config first;
  for (size_t i = 0; i < ARRAY_LEN(forms); i++) {
    hsc_config c;
    hsc_config_defaults(&c);
    hsc_error err = {0};
    hsc_status st = parse_str(&c, forms[i], &err);
    if (st) T_FAIL(t, "form %zu: %s", i, err.msg);
    T_REQUIRE(t, st == HSC_OK);
    T_CHECK(t, c.supernet.lr == 0.25 && c.supernet.bn_eps == 1e-3);
    T_EQ_INT(t, c.space.n_scales, 2);
    T_EQ_INT(t, c.space.n_ops, 2);
    if (i == 0)
      first = c;
    else
      T_CFG_EQUAL(t, &c, &first);
  }
  /* Empty input, comments only and an empty document change nothing; an empty section is allowed. */
  static const char *const empty[] = {"", "# nothing\n", "---\n", "eval:\n"};
  for (size_t i = 0; i < ARRAY_LEN(empty); i++) {
    hsc_config c, d;
    hsc_config_defaults(&c);
    hsc_config_defaults(&d);
    hsc_error err = {0};
    T_EQ_INT(t, parse_str(&c, empty[i], &err), HSC_OK);
    T_CFG_EQUAL(t, &c, &d);
  }
  /* Booleans in every spelling. */
  hsc_config c;
  hsc_config_defaults(&c);
  hsc_error err = {0};
  T_EQ_INT(t,
           parse_str(&c, "data: {augment: no, flip: off, prefetch: False}\nsupernet.nesterov: yes\n", &err),
           HSC_OK);
  T_CHECK(t, !c.data.augment && !c.data.flip && !c.data.prefetch && c.supernet.nesterov);
}

typedef struct {
  const char *text;
  int line, col;
  const char *needles[3]; /* parts of the message; "!text": text must not appear */
} error_case;

/* Every kind of error is HSC_ERR_INPUT with "FILE:LINE:COL:" and the key in its message. */
static void t_parse_errors(hsc_test *t) {
  char long_dir[1200], too_many[600];
  strcpy(long_dir, "run:\n  dir: ");
  const size_t head = strlen(long_dir);
  memset(long_dir + head, 'a', 1100);
  strcpy(long_dir + head + 1100, "\n"); /* terminated: the bytes after it are whatever the stack held */
  strcpy(too_many, "space.scales: [");
  for (int i = 0; i < 33; i++) strcat(too_many, i ? ", 0.1" : "0.1");
  strcat(too_many, "]\n");
  const int col33 = (int)strlen("space.scales: [") + 1 + 5 * 32; /* after "0.1" and 31 x ", 0.1" */
  const error_case cases[] = {
      {"data:\n  batch_size: 12x\n",
       2,
       15,
       {"key 'data.batch_size'", "expected an integer in [1, 65536], got '12x'"}},
      {"data:\n  crop_pad: 1.5\n",
       2,
       13,
       {"key 'data.crop_pad'", "expected an integer in [0, 64], got '1.5'"}},
      {"data: {batch_size: 0}\n", 1, 20, {"key 'data.batch_size'", "got '0'"}},
      {"data: {batch_size: 99999999999999999999}\n", 1, 20, {"key 'data.batch_size'", "expected an integer"}},
      {"supernet:\n  lr: abc\n", 2, 7, {"key 'supernet.lr'", "expected a number in [0, 100], got 'abc'"}},
      {"supernet.momentum: 1.0\n", 1, 20, {"key 'supernet.momentum'", "in [0, 1), got '1.0'"}},
      {"supernet.bn_eps: 0\n", 1, 18, {"key 'supernet.bn_eps'", "in (0, 1]"}},
      {"supernet.lr: inf\n", 1, 14, {"key 'supernet.lr'", "got 'inf'"}},
      {"supernet.lr: 1e999\n", 1, 14, {"key 'supernet.lr'", "got '1e999'"}},
      {"supernet.lr: ' 0.1'\n", 1, 14, {"key 'supernet.lr'"}},
      {"data.augment: maybe\n", 1, 15, {"key 'data.augment'", "expected true or false, got 'maybe'"}},
      {"supernet.lr_schedule: step\n",
       1,
       23,
       {"key 'supernet.lr_schedule'", "one of linear, cosine, got 'step'"}},
      {long_dir, 2, 8, {"key 'run.dir'", "at most 1023 bytes, got 1100 bytes"}},
      {"supernet:\n  lr:\n  momentum: 0.9\n", 2, 6, {"key 'supernet.lr'", "got nothing"}},
      {"run.dir: ~\n", 1, 10, {"key 'run.dir'", "got null"}},
      {"supernet:\n  lrr: 0.1\n", 2, 3, {"unknown key 'supernet.lrr'", "did you mean 'supernet.lr'?"}},
      {"supernett:\n  lr: 0.1\n", 1, 1, {"unknown key 'supernett'", "did you mean 'supernet'?"}},
      {"data:\n  batchsize: 64\n", 2, 3, {"unknown key 'data.batchsize'", "did you mean 'data.batch_size'?"}},
      {"foo: 1\n", 1, 1, {"unknown key 'foo'", "!did you mean"}},
      {"superne.lr: 1\n", 1, 1, {"unknown key 'superne.lr'", "did you mean 'supernet.lr'?"}},
      {"supernet:\n  lr: {a: 1}\n", 2, 7, {"key 'supernet.lr'", "got a mapping"}},
      {"supernet.lr: [1]\n", 1, 14, {"key 'supernet.lr'", "got a list"}},
      {"data.mean: 0.5\n", 1, 12, {"key 'data.mean'", "expected a list"}},
      {too_many, 1, col33, {"key 'space.scales'", "more than 32 items"}},
      {"space.stage_blocks: [2, x, 2]\n",
       1,
       25,
       {"key 'space.stage_blocks'", "item 2: expected an integer in [1, 64]"}},
      {"space:\n  stage_blocks:\n    - 2\n    - 65\n",
       4,
       7,
       {"key 'space.stage_blocks'", "item 2", "got '65'"}},
      {"space.scales: [[1]]\n", 1, 16, {"key 'space.scales'", "item 1: expected a single value, got a list"}},
      {"space.ops: [shuffle3, shuffle9]\n", 1, 23, {"key 'space.ops'", "item 2", "got 'shuffle9'"}},
      {"supernet:\n  lr: 0.1\n  lr: 0.2\n", 3, 3, {"duplicate key 'supernet.lr'", "line 2"}},
      {"supernet:\n  lr: 0.1\nsupernet.lr: 0.2\n", 3, 1, {"duplicate key 'supernet.lr'"}},
      {"eval:\n  recal_batches: 1\neval:\n  val_images: 2\n", 3, 1, {"duplicate key 'eval'"}},
      {"supernet: 5\n", 1, 11, {"key 'supernet'", "expected a mapping"}},
      {"- a\n- b\n", 1, 1, {"top level"}},
      {"? [a]\n: 1\n", 1, 3, {"expected a key name, got a list"}},
      {"supernet.lr: &x 0.1\nretrain.lr: *x\n", 2, 13, {"key 'retrain.lr'", "alias"}},
      {"supernet.lr: 0.1\n---\nretrain.lr: 0.2\n", 2, 1, {"second"}},
      {"supernet:\n  lr: 0.1\n momentum: 0.9\n", 3, 2, {"did not find expected key"}},
      {"space.scales: [0.5, 1.0\n", 2, 1, {"did not find expected ',' or ']'"}},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    const error_case *e = &cases[i];
    hsc_config c;
    hsc_error err = {0};
    char path[64];
    hsc_status st = load_text(e->text, &c, &err, path);
    if (st != HSC_ERR_INPUT) {
      T_FAIL(t, "case %zu: status %d, want HSC_ERR_INPUT (%s)", i, (int)st, err.msg);
      continue;
    }
    T_EQ_INT(t, err.code, HSC_ERR_INPUT);
    char where[128];
    snprintf(where, sizeof where, "%s:%d:%d: ", path, e->line, e->col);
    int ok = strncmp(err.msg, where, strlen(where)) == 0;
    for (int j = 0; j < 3 && e->needles[j]; j++)
      ok &= e->needles[j][0] == '!' ? !strstr(err.msg, e->needles[j] + 1)
                                    : strstr(err.msg, e->needles[j]) != NULL;
    if (!ok) T_FAIL(t, "case %zu: message '%s' lacks '%s' or one of the expected parts", i, err.msg, where);
  }
}

static void t_set(hsc_test *t) {
  hsc_config c;
  hsc_config_defaults(&c);
  hsc_error err = {0};
  static const char *const sets[] = {
      "data.batch_size=256",
      "supernet.lr=0.05",
      "data.flip=no",
      "supernet.nesterov=true",
      "supernet.lr_schedule=cosine",
      "space.scales=[0.5,1.0,1.5]",
      "space.ops=[xception]",
      "data.mean=[0.1, 0.2, 0.3]",
      "space.stage_blocks=[1]",
      "run.dir=/tmp/a dir/with = sign",
      "run.seed=-0",
      "retrain={lr: 0.3, epochs: 7}",
      "checkpoint.every_steps=9000000000",
  };
  for (size_t i = 0; i < ARRAY_LEN(sets); i++) {
    hsc_status st = hsc_config_set(&c, sets[i], &err);
    if (st) T_FAIL(t, "%s: %s", sets[i], err.msg);
  }
  T_EQ_INT(t, c.data.batch_size, 256);
  T_CHECK(t, c.supernet.lr == 0.05);
  T_EQ_INT(t, c.data.flip, 0);
  T_EQ_INT(t, c.supernet.nesterov, 1);
  T_CHECK(t, !strcmp(c.supernet.lr_schedule, "cosine"));
  T_EQ_INT(t, c.space.n_scales, 3);
  T_CHECK(t, c.space.scales[2] == 1.5 && c.space.scales[3] == 0.0);
  T_EQ_INT(t, c.space.n_ops, 1);
  T_CHECK(t, !strcmp(c.space.ops[0], "xception") && c.space.ops[1][0] == '\0');
  T_EQ_INT(t, c.data.n_mean, 3);
  T_CHECK(t, c.data.mean[1] == 0.2);
  T_EQ_INT(t, c.space.n_stage_blocks, 1);
  T_CHECK(t, !strcmp(c.run.dir, "/tmp/a dir/with = sign"));
  T_EQ_INT(t, c.run.seed, 0);
  T_CHECK(t, c.retrain.lr == 0.3);
  T_EQ_INT(t, c.retrain.epochs, 7);
  T_EQ_INT(t, c.checkpoint.every_steps, 9000000000LL);
  /* The same key twice: the last one wins. */
  T_EQ_INT(t, hsc_config_set(&c, "supernet.lr=0.07", &err), HSC_OK);
  T_CHECK(t, c.supernet.lr == 0.07);
}

static void t_set_errors(hsc_test *t) {
  static const struct {
    const char *set;
    const char *needles[2];
  } cases[] = {
      {"supernet.lr=abc", {"--set supernet.lr=abc: expected a number"}},
      {"supernet.lrr=0.1",
       {"--set supernet.lrr=0.1: unknown key 'supernet.lrr'", "did you mean 'supernet.lr'?"}},
      {"nokey", {"--set nokey: expected KEY=VALUE"}},
      {"=5", {"--set =5: expected KEY=VALUE"}},
      {"data.batch_size=", {"--set data.batch_size=: expected an integer in [1, 65536], got nothing"}},
      {"data.batch_size=1.5", {"--set data.batch_size=1.5: expected an integer"}},
      {"data.flip=2", {"--set data.flip=2: expected true or false, got '2'"}},
      {"space.scales=[1,2", {"--set space.scales=[1,2: ", "did not find expected"}},
      {"space.scales=0.5", {"--set space.scales=0.5: expected a list"}},
      {"space.scales=[0.5, 5]", {"item 2: expected a number in (0, 4], got '5'"}},
      {"space.ops=[shuffle3, conv]", {"item 2", "got 'conv'"}},
      {"dist.backend=tpu", {"one of cpu, cuda, got 'tpu'"}},
      {"supernet={lr: x}", {"--set supernet={lr: x}: key 'supernet.lr': expected a number"}},
      {"supernet={lr: 0.1, lr: 0.2}", {"duplicate key 'supernet.lr'"}},
      {"supernet.lr=1\n---\n2", {"second"}},
      {"supernet.lr={a: 1}", {"got a mapping"}},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    hsc_config c;
    hsc_config_defaults(&c);
    hsc_error err = {0};
    hsc_status st = hsc_config_set(&c, cases[i].set, &err);
    if (st != HSC_ERR_INPUT) {
      T_FAIL(t, "'%s': status %d, want HSC_ERR_INPUT", cases[i].set, (int)st);
      continue;
    }
    for (int j = 0; j < 2 && cases[i].needles[j]; j++)
      if (!strstr(err.msg, cases[i].needles[j]))
        T_FAIL(t, "'%s': message '%s' lacks '%s'", cases[i].set, err.msg, cases[i].needles[j]);
  }
}

/* parse(dump(cfg)) == cfg, with and without comments. */
static void check_round_trip(hsc_test *t, const hsc_config *c, const char *what) {
  for (int comments = 0; comments < 2; comments++) {
    char *text = hsc_config_dump(c, comments);
    hsc_config back;
    hsc_config_defaults(&back);
    /* Start from other values, so that every key must come from the dump. */
    hsc_error err = {0};
    T_EQ_INT(t, hsc_config_set(&back, "supernet.lr=3.5", &err), HSC_OK);
    T_EQ_INT(t, hsc_config_set(&back, "space.scales=[3]", &err), HSC_OK);
    hsc_status st = hsc_config_parse(&back, text, strlen(text), "dump", &err);
    if (st) T_FAIL(t, "%s: the dump does not parse: %s\n%s", what, err.msg, text);
    if (!cfg_equal(&back, c))
      T_FAIL(t, "%s: round trip differs at %s\n%s", what, first_difference(&back, c), text);
    T_CHECK(t, comments ? strstr(text, "\n  # global batch of one training step") != NULL
                        : !strstr(text, "\n  # ") && text[0] != '#');
    free(text);
  }
}

static void t_dump_round_trip(hsc_test *t) {
  hsc_config c;
  hsc_config_defaults(&c);
  check_round_trip(t, &c, "defaults");
  char *text = hsc_config_dump(&c, 0);
  /* Shortest round-tripping floats; every key present; strings plain when they can be. */
  T_CHECK(t, strstr(text, "\n  lr: 0.1\n") != NULL);
  T_CHECK(t, strstr(text, "\n  weight_decay: 4e-05\n") != NULL);
  T_CHECK(t, strstr(text, "\n  scales: [0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0]\n") != NULL);
  T_CHECK(t, strstr(text, "\n  mean: [0.286]\n") != NULL);
  T_CHECK(t, strstr(text, "\n  path: /usr/share/datasets/fashion-mnist\n") != NULL);
  T_CHECK(t, strstr(text, "\n  ops: [shuffle3, shuffle5, shuffle7, xception]\n") != NULL);
  T_CHECK(t, strncmp(text, "run:\n  dir: runs/fmnist\n  seed: 1\ndata:\n", 40) == 0);
  size_t n;
  const hsc_cfg_key *keys = hsc_config_schema(&n);
  for (size_t i = 0; i < n; i++) {
    char line[80];
    snprintf(line, sizeof line, "\n  %s: ", strchr(keys[i].key, '.') + 1);
    if (!strstr(text, line)) T_FAIL(t, "dump lacks %s", keys[i].key);
  }
  free(text);

  hsc_error err = {0};
  T_REQUIRE(t, hsc_config_load(&c, "configs/fmnist.yaml", NULL, 0, MPI_COMM_SELF, &err) == HSC_OK);
  check_round_trip(t, &c, "fmnist");
  T_REQUIRE(t, hsc_config_load(&c, "configs/imagenet.yaml", NULL, 0, MPI_COMM_SELF, &err) == HSC_OK);
  check_round_trip(t, &c, "imagenet");

  /* Values that need care: strings that read as other things, quotes, escapes, UTF-8; floats with long
   * expansions, tiny and negative zero. */
  static const char *const dirs[] = {"",          "null",  "true",       "123",        "1e5",
                                     "- x",       "a: b",  "a #b",       "say \"hi\"", "back\\slash",
                                     "tab\there", "línea", "  spaced  ", "[x]",        "~"};
  for (size_t i = 0; i < ARRAY_LEN(dirs); i++) {
    hsc_config_defaults(&c);
    memset(c.run.dir, 0, sizeof c.run.dir);
    strcpy(c.run.dir, dirs[i]);
    check_round_trip(t, &c, dirs[i]);
  }
  hsc_config_defaults(&c);
  c.supernet.lr = 0.1 + 0.2;
  c.supernet.bn_eps = 1e-300;
  c.data.mean[0] = -0.0;
  c.data.mean[1] = 1.0 / 3.0;
  c.data.mean[2] = -123456.789e10;
  c.data.n_mean = 3;
  c.space.scales[0] = 0.1 * 3;
  c.run.seed = INT64_MAX;
  check_round_trip(t, &c, "floats");
  text = hsc_config_dump(&c, 0);
  T_CHECK(t, strstr(text, "\n  lr: 0.30000000000000004\n") != NULL);
  T_CHECK(t, strstr(text, "\n  mean: [-0.0, 0.3333333333333333, -1.23456789e+15]\n") != NULL);
  free(text);
}

static void t_validate(hsc_test *t) {
  static const struct {
    const char *set1, *set2;
    int world;
    const char *needles[2];
  } cases[] = {
      {"space.stage_blocks=[2, 4]",
       NULL,
       0,
       {"space.stage_channels, space.stage_blocks and space.stage_strides", "3, 2 and 3"}},
      {"space.stage_strides=[1, 1, 1, 1]", NULL, 0, {"space.stage_strides", "3, 3 and 4"}},
      {"space.stage_channels=[]", NULL, 0, {"space.stage_channels", "at least one"}},
      {"space.input_channels=3", NULL, 0, {"data.mean", "space.input_channels is 3"}},
      {"data.std=[0.5, 0.5]", NULL, 0, {"data.std has 2 entries", "space.input_channels is 1"}},
      {"space.scales=[0.2, 0.6, 0.4]", NULL, 0, {"space.scales", "strictly increasing"}},
      {"space.scales=[0.2, 0.2]", NULL, 0, {"space.scales", "strictly increasing"}},
      {"space.scales=[]", NULL, 0, {"space.scales", "1 to 16"}},
      {"space.scales=[0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0,1.1,1.2,1.3,1.4,1.5,1.6,1.7]",
       NULL,
       0,
       {"space.scales", "got 17"}},
      {"space.ops=[shuffle3, xception, shuffle3]", NULL, 0, {"space.ops", "'shuffle3' is listed twice"}},
      {"space.ops=[]", NULL, 0, {"space.ops", "at least one"}},
      {"data.batch_size=128", NULL, 3, {"data.batch_size", "divisible by the number of ranks (3)"}},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    hsc_config c;
    hsc_config_defaults(&c);
    hsc_error err = {0};
    T_REQUIRE(t, hsc_config_set(&c, cases[i].set1, &err) == HSC_OK);
    if (cases[i].set2) T_REQUIRE(t, hsc_config_set(&c, cases[i].set2, &err) == HSC_OK);
    hsc_status st = hsc_config_validate(&c, cases[i].world, &err);
    if (st != HSC_ERR_INPUT) {
      T_FAIL(t, "'%s': validate gave %d, want HSC_ERR_INPUT", cases[i].set1, (int)st);
      continue;
    }
    for (int j = 0; j < 2 && cases[i].needles[j]; j++)
      if (!strstr(err.msg, cases[i].needles[j]))
        T_FAIL(t, "'%s': message '%s' lacks '%s'", cases[i].set1, err.msg, cases[i].needles[j]);
  }
  /* The rank check is skipped at world size 0 and passes for divisors. */
  hsc_config c;
  hsc_config_defaults(&c);
  hsc_error err = {0};
  T_EQ_INT(t, hsc_config_validate(&c, 0, &err), HSC_OK);
  T_EQ_INT(t, hsc_config_validate(&c, 8, &err), HSC_OK);
  T_EQ_INT(t, hsc_config_validate(&c, 5, &err), HSC_ERR_INPUT);
}

static void t_hash(hsc_test *t) {
  hsc_config a, b;
  hsc_config_defaults(&a);
  hsc_config_defaults(&b);
  uint64_t h = hsc_config_hash(&a);
  T_CHECK(t, h == hsc_config_hash(&b));
  hsc_error err = {0};
  T_REQUIRE(t, hsc_config_set(&b, "supernet.lr=0.2", &err) == HSC_OK);
  T_CHECK(t, hsc_config_hash(&b) != h);
  T_REQUIRE(t, hsc_config_set(&b, "supernet.lr=0.1", &err) == HSC_OK);
  T_CHECK(t, hsc_config_hash(&b) == h);
  T_REQUIRE(t, hsc_config_set(&b, "space.ops=[shuffle3, shuffle5, shuffle7]", &err) == HSC_OK);
  T_CHECK(t, hsc_config_hash(&b) != h);
  /* FNV-1a 64 of the dump, as documented. */
  char *text = hsc_config_dump(&a, 0);
  uint64_t f = 0xcbf29ce484222325ull;
  for (const char *p = text; *p; p++) f = (f ^ (unsigned char)*p) * 0x100000001b3ull;
  free(text);
  T_CHECK(t, f == h);
}

/* The collective load on MPI_COMM_WORLD: the file with overrides, a missing file, a bad file, a bad
 * override and a batch that does not divide over the ranks all give every rank the same answer. */
static void t_load_world(hsc_test *t) {
  int size = 1;
  HSC_CHECK_MPI(MPI_Comm_size(MPI_COMM_WORLD, &size));
  hsc_config c;
  hsc_error err = {0};
  char batch[64];
  snprintf(batch, sizeof batch, "data.batch_size=%d", 64 * size);
  const char *sets[] = {"supernet.lr=0.2", batch, "space.scales=[0.5, 1.0]"};
  hsc_status st = hsc_config_load(&c, "configs/fmnist.yaml", sets, 3, MPI_COMM_WORLD, &err);
  if (st) T_FAIL(t, "%s", err.msg);
  T_CHECK(t, c.supernet.lr == 0.2);
  T_EQ_INT(t, c.data.batch_size, 64 * size);
  T_EQ_INT(t, c.space.n_scales, 2);
  T_EQ_INT(t, c.supernet.warmup_steps, 200);
  /* Every rank holds the same configuration. */
  uint64_t h = hsc_config_hash(&c), h0 = h;
  HSC_CHECK_MPI(MPI_Bcast(&h0, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD));
  T_CHECK(t, h == h0);

  st = hsc_config_load(&c, "/nonexistent/hsc/missing.yaml", NULL, 0, MPI_COMM_WORLD, &err);
  T_EQ_INT(t, st, HSC_ERR_IO);
  T_CHECK(t, strstr(err.msg, "'/nonexistent/hsc/missing.yaml'") != NULL);
  T_CHECK(t, strstr(err.msg, strerror(ENOENT)) != NULL);

  st = hsc_config_load(&c, "configs", NULL, 0, MPI_COMM_WORLD, &err);
  T_EQ_INT(t, st, HSC_ERR_IO);
  T_CHECK(t, strstr(err.msg, "'configs'") != NULL);

  const char *bad_set[] = {"supernet.lr=-1"};
  st = hsc_config_load(&c, "configs/fmnist.yaml", bad_set, 1, MPI_COMM_WORLD, &err);
  T_EQ_INT(t, st, HSC_ERR_INPUT);
  T_CHECK(t, strstr(err.msg, "--set supernet.lr=-1: expected a number in [0, 100], got '-1'") != NULL);

  /* No file: defaults and overrides only. */
  st = hsc_config_load(&c, NULL, sets, 2, MPI_COMM_WORLD, &err);
  T_EQ_INT(t, st, HSC_OK);
  T_CHECK(t, c.supernet.lr == 0.2);

  if (size > 1) {
    const char *odd[] = {"data.batch_size=1"};
    st = hsc_config_load(&c, NULL, odd, 1, MPI_COMM_WORLD, &err);
    T_EQ_INT(t, st, HSC_ERR_INPUT);
    T_CHECK(t, strstr(err.msg, "divisible by the number of ranks") != NULL);
  }
  /* Messages agree across ranks. */
  char msg0[sizeof err.msg];
  memcpy(msg0, err.msg, sizeof msg0);
  HSC_CHECK_MPI(MPI_Bcast(msg0, (int)sizeof msg0, MPI_CHAR, 0, MPI_COMM_WORLD));
  T_CHECK(t, !strcmp(msg0, err.msg));
}

static void t_print_schema(hsc_test *t) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  T_REQUIRE(t, f != NULL);
  hsc_config_print_schema(f);
  T_REQUIRE(t, fclose(f) == 0);
  size_t n;
  const hsc_cfg_key *keys = hsc_config_schema(&n);
  for (size_t i = 0; i < n; i++)
    if (!strstr(buf, keys[i].key) || !strstr(buf, keys[i].help))
      T_FAIL(t, "schema listing lacks %s", keys[i].key);
  T_CHECK(t, strstr(buf, "int in [1, 65536]") != NULL);
  T_CHECK(t, strstr(buf, "enum of linear | cosine") != NULL);
  T_CHECK(t, strstr(buf, "float list, each in (0, 4]") != NULL);
  free(buf);
}

int main(int argc, char **argv) {
  hsc_proc_init(&argc, &argv);
  static const hsc_test_case cases[] = {
      {"schema_covers_struct", t_schema_covers_struct},
      {"defaults", t_defaults},
      {"fmnist_yaml", t_fmnist_yaml},
      {"imagenet_yaml", t_imagenet_yaml},
      {"nested_and_dotted", t_nested_and_dotted},
      {"parse_errors", t_parse_errors},
      {"set", t_set},
      {"set_errors", t_set_errors},
      {"dump_round_trip", t_dump_round_trip},
      {"validate", t_validate},
      {"hash", t_hash},
      {"load_world", t_load_world},
      {"print_schema", t_print_schema},
  };
  int rc = hsc_test_main("test_config", argc, argv, cases, (int)ARRAY_LEN(cases));
  hsc_proc_finalize();
  return rc;
}
