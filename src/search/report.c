/* The search's outputs (search.h: hsc_search_report), regenerated from the newest search checkpoint:
 * history.csv, best.yaml, front.csv, summary.json, pareto.svg and progress.svg in the run directory. Every
 * file is written through a temporary name and a rename. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hsconas/checkpoint.h"
#include "hsconas/plot.h"
#include "hsconas/search.h"
#include "search_internal.h"

typedef struct {
  hsc_config cfg;
  hsc_space space;
  hsc_record *rec;
  int n;
  double target;
  int stages;
  char step[32];
  char ckpt[HSC_CFG_PATH + 96];
  int64_t workers, completed, redispatched, dead;
  double busy_s, eval_s, span_s, cpu_s, idle_s;
  uint8_t op_mask[HSC_MAX_BLOCKS * HSC_OP_COUNT], scale_mask[HSC_MAX_BLOCKS * HSC_MAX_SCALES];
} report_data;

static hsc_status load(const char *run_dir, report_data *d, hsc_error *err) {
  memset(d, 0, sizeof *d);
  char dir[HSC_CFG_PATH + 32];
  snprintf(dir, sizeof dir, "%s/checkpoints", run_dir);
  hsc_ckpt *ck = NULL;
  hsc_status st = hsc_ckpt_open_latest(dir, "search", &ck, err);
  if (st != HSC_OK) return st;
  if (!ck)
    return hsc_error_set(err, HSC_ERR_INPUT, "%s holds no search checkpoint: run 'hsconas search' first",
                         dir);
  snprintf(d->ckpt, sizeof d->ckpt, "%s", hsc_ckpt_path(ck));
  char *text = hsc_xmalloc(1 << 20);
  int64_t n = 0, stage = 0;
  hsc_config_defaults(&d->cfg);
  if ((st = hsc_ckpt_get_str(ck, "config", text, 1 << 20, err)) == HSC_OK &&
      (st = hsc_config_parse(&d->cfg, text, strlen(text), d->ckpt, err)) == HSC_OK &&
      (st = hsc_space_init(&d->space, &d->cfg, err)) == HSC_OK &&
      (st = hsc_ckpt_get_int(ck, "history_rows", &n, err)) == HSC_OK &&
      (st = hsc_ckpt_get_int(ck, "stage", &stage, err)) == HSC_OK &&
      (st = hsc_ckpt_get_double(ck, "target_ms", &d->target, err)) == HSC_OK &&
      (st = hsc_ckpt_get_str(ck, "search_step", d->step, sizeof d->step, err)) == HSC_OK) {
    /* The dispatch statistics are informative: a checkpoint without them reports zeros. */
    hsc_error ignore;
    int64_t iv[4] = {0, 0, 0, 0};
    double dv[5] = {0, 0, 0, 0, 0};
    static const char *const ikeys[] = {"dispatch_workers", "dispatch_completed", "dispatch_redispatched",
                                        "dispatch_dead_workers"};
    static const char *const dkeys[] = {"dispatch_master_busy_s", "dispatch_worker_eval_s",
                                        "dispatch_busy_span_s", "dispatch_master_cpu_s",
                                        "dispatch_idle_cpu_s"};
    for (int i = 0; i < 4; i++)
      if (hsc_ckpt_get_int(ck, ikeys[i], &iv[i], &ignore) != HSC_OK) iv[i] = 0;
    for (int i = 0; i < 5; i++)
      if (hsc_ckpt_get_double(ck, dkeys[i], &dv[i], &ignore) != HSC_OK) dv[i] = 0;
    d->workers = iv[0], d->completed = iv[1], d->redispatched = iv[2], d->dead = iv[3];
    d->busy_s = dv[0], d->eval_s = dv[1], d->span_s = dv[2], d->cpu_s = dv[3], d->idle_s = dv[4];
    if (n < 0 || n > INT32_MAX / 2)
      st = hsc_error_set(err, HSC_ERR_INPUT, "%s: history_rows %lld is not a row count", d->ckpt,
                         (long long)n);
    d->n = (int)n;
    d->stages = d->cfg.shrink.stages;
    const int L = d->space.nblocks;
    if (st == HSC_OK && (st = search_read_history(ck, &d->space, d->n, &d->rec, err)) == HSC_OK &&
        (st = hsc_ckpt_read_u8(ck, "/space/op_mask", (size_t)L * HSC_OP_COUNT, d->op_mask, err)) == HSC_OK)
      st = hsc_ckpt_read_u8(ck, "/space/scale_mask", (size_t)L * d->space.nscales, d->scale_mask, err);
  }
  free(text);
  hsc_ckpt_close(ck);
  return st;
}

/* Opens PATH.tmp for writing; close_rename finishes it. */
static FILE *open_tmp(const char *path, char *tmp, size_t len, hsc_error *err) {
  snprintf(tmp, len, "%s.tmp", path);
  FILE *f = fopen(tmp, "w");
  if (!f) hsc_error_set(err, HSC_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
  return f;
}

static hsc_status close_rename(FILE *f, const char *tmp, const char *path, hsc_error *err) {
  const int bad = ferror(f);
  if (fclose(f) != 0 || bad) {
    remove(tmp);
    return hsc_error_set(err, HSC_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
  }
  if (rename(tmp, path) != 0) {
    remove(tmp);
    return hsc_error_set(err, HSC_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
  }
  return HSC_OK;
}

/* JSON string body (quotes and backslashes escaped). */
static void json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    const unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\')
      fprintf(f, "\\%c", ch);
    else if (ch < 0x20)
      fprintf(f, "\\u%04x", ch);
    else
      fputc(ch, f);
  }
  fputc('"', f);
}

static void json_num(FILE *f, double v) {
  if (isfinite(v))
    fprintf(f, "%.17g", v);
  else
    fputs("null", f);
}

hsc_status hsc_search_report(const char *run_dir, hsc_search_result *res, hsc_error *err) {
  report_data d;
  hsc_status st = load(run_dir, &d, err);
  if (st != HSC_OK) {
    free(d.rec);
    return st;
  }
  const int n = d.n, pareto = !strcmp(d.cfg.evolution.objective, "pareto");
  int *idx = hsc_xmalloc((size_t)(n + 1) * sizeof *idx),
      *front = hsc_xmalloc((size_t)(n + 1) * sizeof *front);
  int nevo = 0;
  for (int i = 0; i < n; i++)
    if (search_is_evolution(&d.rec[i], d.stages)) idx[nevo++] = i;
  /* Without an evolution yet (stopped during shrinking), the best of everything evaluated. */
  if (nevo == 0)
    for (int i = 0; i < n; i++) idx[nevo++] = i;
  const int nfront = hsc_pareto_front(d.rec, idx, nevo, front);
  int best = -1;
  hsc_select_topk(d.rec, idx, nevo, 1, 0, &best);
  memset(res, 0, sizeof *res);
  res->nhistory = n;
  res->nfront = pareto ? nfront : 0;
  res->target_ms = d.target;
  if (best >= 0) {
    res->best = d.rec[best];
    hsc_arch_format(&d.space, &d.rec[best].arch, res->best_text, sizeof res->best_text);
  }
  char path[HSC_CFG_PATH + 64], tmp[HSC_CFG_PATH + 80];
  char arch[4096];

  /* history.csv */
  snprintf(path, sizeof path, "%s/history.csv", run_dir);
  FILE *f = open_tmp(path, tmp, sizeof tmp, err);
  if (!f) st = err->code;
  if (st == HSC_OK) {
    fprintf(f, "id,stage,generation,kind,hash,top1,top5,loss,latency_ms,mflops,worker,seconds,arch\n");
    for (int i = 0; i < n; i++) {
      const hsc_record *r = &d.rec[i];
      hsc_arch_format(&d.space, &r->arch, arch, sizeof arch);
      fprintf(f, "%lld,%d,%d,%s,%016llx,%.4f,%.4f,%.6f,%.6f,%.4f,%d,%.3f,\"%s\"\n", (long long)r->id,
              r->stage, r->generation, hsc_cand_kind_name(r->kind), (unsigned long long)r->hash, r->top1,
              r->top5, r->loss, r->latency_ms, (double)r->flops / 1e6, r->worker, r->seconds, arch);
    }
    st = close_rename(f, tmp, path, err);
  }

  /* front.csv */
  snprintf(path, sizeof path, "%s/front.csv", run_dir);
  if (st == HSC_OK && (f = open_tmp(path, tmp, sizeof tmp, err)) == NULL) st = err->code;
  if (st == HSC_OK) {
    fprintf(f, "id,hash,top1,latency_ms,mflops,arch\n");
    for (int j = 0; j < nfront; j++) {
      const hsc_record *r = &d.rec[front[j]];
      hsc_arch_format(&d.space, &r->arch, arch, sizeof arch);
      fprintf(f, "%lld,%016llx,%.4f,%.6f,%.4f,\"%s\"\n", (long long)r->id, (unsigned long long)r->hash,
              r->top1, r->latency_ms, (double)r->flops / 1e6, arch);
    }
    st = close_rename(f, tmp, path, err);
  }

  /* best.yaml: readable by --arch "$(cat best.yaml)" */
  snprintf(path, sizeof path, "%s/best.yaml", run_dir);
  if (st == HSC_OK && best < 0 && remove(path) != 0 && errno != ENOENT)
    st = hsc_error_set(err, HSC_ERR_IO, "cannot remove the stale %s: %s", path, strerror(errno));
  if (st == HSC_OK && best >= 0 && (f = open_tmp(path, tmp, sizeof tmp, err)) == NULL) st = err->code;
  if (st == HSC_OK && best >= 0) {
    const hsc_record *r = &d.rec[best];
    fprintf(
        f,
        "# hsconas search result (%s)\n# validation top1 %.2f%% on the supernet, predicted latency %.4f ms "
        "(target %.4f ms), candidate %lld of stage %d\n",
        d.ckpt, r->top1, r->latency_ms, d.target, (long long)r->id, r->stage);
    hsc_arch_write_yaml(&d.space, &r->arch, f);
    st = close_rename(f, tmp, path, err);
  }

  /* summary.json */
  snprintf(path, sizeof path, "%s/summary.json", run_dir);
  if (st == HSC_OK && (f = open_tmp(path, tmp, sizeof tmp, err)) == NULL) st = err->code;
  if (st == HSC_OK) {
    fprintf(f, "{\n  \"run_dir\": ");
    json_str(f, run_dir);
    fprintf(f, ",\n  \"checkpoint\": ");
    json_str(f, d.ckpt);
    fprintf(f, ",\n  \"state\": ");
    json_str(f, d.step);
    fprintf(f, ",\n  \"target_ms\": ");
    json_num(f, d.target);
    fprintf(f, ",\n  \"objective\": \"%s\",\n  \"mode\": \"%s\",\n  \"dcs\": %s,\n  \"shrink_stages\": %d,\n",
            d.cfg.evolution.objective, d.cfg.evolution.mode, d.cfg.dcs.enabled ? "true" : "false", d.stages);
    fprintf(f, "  \"evaluations\": %d,\n", n);
    fprintf(f, "  \"best\": ");
    if (best < 0) {
      fputs("null", f);
    } else {
      const hsc_record *r = &d.rec[best];
      hsc_arch_format(&d.space, &r->arch, arch, sizeof arch);
      fprintf(f, "{\"id\": %lld, \"hash\": \"%016llx\", \"arch\": ", (long long)r->id,
              (unsigned long long)r->hash);
      json_str(f, arch);
      fprintf(f, ", \"top1\": ");
      json_num(f, r->top1);
      fprintf(f, ", \"latency_ms\": ");
      json_num(f, r->latency_ms);
      fprintf(f, ", \"mflops\": ");
      json_num(f, (double)r->flops / 1e6);
      fprintf(f, ", \"params\": %lld}", (long long)hsc_arch_params(&d.space, &r->arch));
    }
    fprintf(f, ",\n  \"front\": [");
    for (int j = 0; j < nfront; j++) {
      const hsc_record *r = &d.rec[front[j]];
      hsc_arch_format(&d.space, &r->arch, arch, sizeof arch);
      fprintf(f, "%s\n    {\"id\": %lld, \"top1\": ", j ? "," : "", (long long)r->id);
      json_num(f, r->top1);
      fprintf(f, ", \"latency_ms\": ");
      json_num(f, r->latency_ms);
      fprintf(f, ", \"arch\": ");
      json_str(f, arch);
      fputc('}', f);
    }
    fprintf(f, "%s],\n  \"space_left\": [", nfront ? "\n  " : "");
    for (int l = 0; l < d.space.nblocks; l++) {
      fprintf(f, "%s\n    {\"block\": %d, \"ops\": [", l ? "," : "", l);
      int first = 1;
      for (int o = 0; o < d.space.nops; o++)
        if (d.op_mask[l * HSC_OP_COUNT + d.space.ops[o]]) {
          fprintf(f, "%s\"%s\"", first ? "" : ", ", hsc_op_name(d.space.ops[o]));
          first = 0;
        }
      fprintf(f, "], \"scales\": [");
      first = 1;
      for (int k = 0; k < d.space.nscales; k++)
        if (d.scale_mask[l * d.space.nscales + k]) {
          fprintf(f, "%s%g", first ? "" : ", ", d.space.scales[k]);
          first = 0;
        }
      fputs("]}", f);
    }
    /* The master's work per evaluation: its CPU time in the evaluation loops (candidates, DCS, results,
     * checkpoints, messages) minus the idle polls of its sleeping waits, which cost per second waited, not
     * per evaluation (reported apart as a share of one core). */
    const double per_eval_us = d.completed > 0 ? (d.cpu_s - d.idle_s) / (double)d.completed * 1e6 : 0.0;
    const double idle_share = d.span_s > 0 ? d.idle_s / d.span_s : 0.0;
    const double util = d.span_s > 0 && d.workers > 0 ? d.eval_s / ((double)d.workers * d.span_s) : 0.0;
    fprintf(
        f,
        "\n  ],\n  \"dispatch\": {\"workers\": %lld, \"completed\": %lld, \"redispatched\": %lld, "
        "\"dead_workers\": %lld, \"master_cpu_s\": %.6f, \"farm_cpu_s\": %.6f, \"idle_poll_cpu_s\": %.6f, "
        "\"master_us_per_eval\": %.2f, \"idle_poll_core_share\": %.5f, \"worker_eval_s\": %.6f, "
        "\"busy_span_s\": %.6f, \"utilisation\": %.5f},\n",
        (long long)d.workers, (long long)d.completed, (long long)d.redispatched, (long long)d.dead, d.cpu_s,
        d.busy_s, d.idle_s, per_eval_us, idle_share, d.eval_s, d.span_s, util);
    fprintf(f,
            "  \"files\": {\"history\": \"history.csv\", \"best\": \"best.yaml\", \"front\": \"front.csv\", "
            "\"pareto_plot\": \"pareto.svg\", \"progress_plot\": \"progress.svg\"}\n}\n");
    st = close_rename(f, tmp, path, err);
  }

  /* pareto.svg: every evaluated candidate, the front and the chosen one */
  if (st == HSC_OK) {
    double *xs = hsc_xmalloc((size_t)(n + 1) * sizeof *xs), *ys = hsc_xmalloc((size_t)(n + 1) * sizeof *ys);
    double *xe = hsc_xmalloc((size_t)(n + 1) * sizeof *xe), *ye = hsc_xmalloc((size_t)(n + 1) * sizeof *ye);
    double *xf = hsc_xmalloc((size_t)(n + 1) * sizeof *xf), *yf = hsc_xmalloc((size_t)(n + 1) * sizeof *yf);
    int ns = 0, ne = 0;
    for (int i = 0; i < n; i++) {
      const hsc_record *r = &d.rec[i];
      if (search_is_evolution(r, d.stages))
        xe[ne] = r->latency_ms, ye[ne++] = r->top1;
      else
        xs[ns] = r->latency_ms, ys[ns++] = r->top1;
    }
    for (int j = 0; j < nfront; j++) xf[j] = d.rec[front[j]].latency_ms, yf[j] = d.rec[front[j]].top1;
    double xb = best >= 0 ? d.rec[best].latency_ms : NAN, yb = best >= 0 ? d.rec[best].top1 : NAN;
    hsc_plot_panel p = {.title = "validation top-1 vs predicted latency",
                        .xlabel = "predicted latency (ms)",
                        .ylabel = "top-1 on the supernet (%)",
                        .vline = 1,
                        .vline_x = d.target,
                        .vline_label = "target"};
    p.series[p.nseries++] = (hsc_plot_series){xs, ys, ns, "shrinking / DCS samples", "#aaaaaa", 0, 2.5};
    p.series[p.nseries++] = (hsc_plot_series){xe, ye, ne, "evolution candidates", "#1f77b4", 0, 2.5};
    p.series[p.nseries++] = (hsc_plot_series){xf, yf, nfront, "Pareto front", "#ff7f0e", 1, 3.5};
    p.series[p.nseries++] = (hsc_plot_series){&xb, &yb, best >= 0, "chosen", "#d62728", 0, 6};
    char sub[256];
    snprintf(sub, sizeof sub, "%d candidates, target %.4f ms, %s objective, DCS %s, %d shrinking stages", n,
             d.target, d.cfg.evolution.objective, d.cfg.dcs.enabled ? "on" : "off", d.stages);
    snprintf(path, sizeof path, "%s/pareto.svg", run_dir);
    st = hsc_plot_svg(path, "hsconas search", sub, &p, 1, err);
    free(xs), free(ys), free(xe), free(ye), free(xf), free(yf);
  }

  /* progress.svg: best top-1 so far and each generation's best, per generation */
  if (st == HSC_OK) {
    int ngen = 0;
    for (int i = 0; i < n; i++)
      if (search_is_evolution(&d.rec[i], d.stages) && d.rec[i].generation + 1 > ngen)
        ngen = d.rec[i].generation + 1;
    double *gx = hsc_xmalloc((size_t)(ngen + 1) * sizeof *gx),
           *gb = hsc_xmalloc((size_t)(ngen + 1) * sizeof *gb);
    double *gs = hsc_xmalloc((size_t)(ngen + 1) * sizeof *gs),
           *gm = hsc_xmalloc((size_t)(ngen + 1) * sizeof *gm);
    double so_far = -INFINITY;
    for (int g = 0; g < ngen; g++) {
      double top = -INFINITY, sum = 0;
      int cnt = 0;
      for (int i = 0; i < n; i++)
        if (search_is_evolution(&d.rec[i], d.stages) && d.rec[i].generation == g) {
          top = fmax(top, d.rec[i].top1);
          sum += d.rec[i].top1;
          cnt++;
        }
      so_far = fmax(so_far, top);
      gx[g] = g, gb[g] = cnt ? top : NAN, gs[g] = so_far, gm[g] = cnt ? sum / cnt : NAN;
    }
    hsc_plot_panel p = {
        .title = "evolution progress", .xlabel = "generation", .ylabel = "validation top-1 (%)"};
    p.series[p.nseries++] = (hsc_plot_series){gx, gs, ngen, "best so far", "#d62728", 1, 3};
    p.series[p.nseries++] = (hsc_plot_series){gx, gb, ngen, "best of the generation", "#1f77b4", 0, 3};
    p.series[p.nseries++] = (hsc_plot_series){gx, gm, ngen, "mean of the generation", "#999999", 1, 2};
    char sub[256];
    snprintf(sub, sizeof sub, "%s evolution, %d generations, population %d", d.cfg.evolution.mode, ngen,
             d.cfg.evolution.population);
    snprintf(path, sizeof path, "%s/progress.svg", run_dir);
    st = hsc_plot_svg(path, "hsconas search", sub, &p, 1, err);
    free(gx), free(gb), free(gs), free(gm);
  }
  free(idx), free(front), free(d.rec);
  return st;
}
