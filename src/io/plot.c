/* SVG scatter plots (plot.h). Each panel is PANEL_W x PANEL_H pixels: a frame with ticks at 1, 2 or 5
 * times a power of ten (Heckbert's "nice numbers"), the series as small circles, and a legend in the upper
 * left corner. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "hsconas/plot.h"

enum { PANEL_W = 460, PANEL_H = 420, LEFT = 70, RIGHT = 20, TOP = 50, BOTTOM = 55, TITLE_H = 44 };

typedef struct {
  double lo, hi;
} range;

/* A round step near span / 5: 1, 2 or 5 times a power of ten. */
static double nice_step(double span) {
  const double raw = span / 5.0, mag = pow(10.0, floor(log10(raw))), f = raw / mag;
  return (f < 1.5 ? 1.0 : f < 3.5 ? 2.0 : f < 7.5 ? 5.0 : 10.0) * mag;
}

/* The data range of a panel's x (axis 0) or y (axis 1) values, 5% wider on each side. */
static range data_range(const hsc_plot_panel *p, int axis) {
  range r = {INFINITY, -INFINITY};
  for (int s = 0; s < p->nseries; s++)
    for (int i = 0; i < p->series[s].n; i++) {
      const double v = axis ? p->series[s].y[i] : p->series[s].x[i];
      if (!isfinite(v)) continue;
      if (v < r.lo) r.lo = v;
      if (v > r.hi) r.hi = v;
    }
  if (axis == 0 && p->vline && isfinite(p->vline_x)) {
    if (p->vline_x < r.lo) r.lo = p->vline_x;
    if (p->vline_x > r.hi) r.hi = p->vline_x;
  }
  if (!(r.lo <= r.hi)) return (range){0.0, 1.0};
  double span = r.hi - r.lo;
  if (span <= 0) span = fabs(r.hi) > 0 ? fabs(r.hi) * 0.1 : 1.0;
  return (range){r.lo - 0.05 * span, r.hi + 0.05 * span};
}

/* Escapes &, <, > and quotes for SVG text. */
static void put_text(FILE *f, const char *s) {
  for (; s && *s; s++) switch (*s) {
      case '&':
        fputs("&amp;", f);
        break;
      case '<':
        fputs("&lt;", f);
        break;
      case '>':
        fputs("&gt;", f);
        break;
      case '"':
        fputs("&quot;", f);
        break;
      default:
        fputc(*s, f);
    }
}

static void panel(FILE *f, const hsc_plot_panel *p, double ox, double oy) {
  range rx = data_range(p, 0), ry = data_range(p, 1);
  if (p->diagonal) { /* one range for both axes, so that y = x is the 45-degree line */
    const double lo = fmin(rx.lo, ry.lo), hi = fmax(rx.hi, ry.hi);
    rx = ry = (range){lo, hi};
  }
  const double w = PANEL_W - LEFT - RIGHT, h = PANEL_H - TOP - BOTTOM;
  const double x0 = ox + LEFT, y0 = oy + TOP; /* top left corner of the frame */
#define PX(v) (x0 + ((v)-rx.lo) / (rx.hi - rx.lo) * w)
#define PY(v) (y0 + h - ((v)-ry.lo) / (ry.hi - ry.lo) * h)
  fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"14\">", x0 + w / 2, oy + 28);
  put_text(f, p->title);
  fputs("</text>\n", f);
  fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#444\"/>\n",
          x0, y0, w, h);
  fprintf(f,
          "<clipPath id=\"c%.0f\"><rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\"/></clipPath>\n",
          ox, x0, y0, w, h);
  /* ticks and grid */
  for (int axis = 0; axis < 2; axis++) {
    const range r = axis ? ry : rx;
    const double step = nice_step(r.hi - r.lo);
    for (double v = ceil(r.lo / step) * step; v <= r.hi + 1e-9 * step; v += step) {
      const double t = fabs(v) < 1e-12 * step ? 0.0 : v;
      if (axis == 0)
        fprintf(f,
                "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"11\">%g</text>\n",
                PX(t), y0, PX(t), y0 + h, PX(t), y0 + h + 16, t);
      else
        fprintf(f,
                "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"11\">%g</text>\n",
                x0, PY(t), x0 + w, PY(t), x0 - 6, PY(t) + 4, t);
    }
  }
  fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"12\">", x0 + w / 2,
          oy + PANEL_H - 12);
  put_text(f, p->xlabel);
  fprintf(f,
          "</text>\n<text transform=\"translate(%.1f,%.1f) rotate(-90)\" text-anchor=\"middle\" "
          "font-size=\"12\">",
          ox + 18, y0 + h / 2);
  put_text(f, p->ylabel);
  fputs("</text>\n", f);
  fprintf(f, "<g clip-path=\"url(#c%.0f)\">\n", ox);
  if (p->diagonal) {
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#888\"/>\n", PX(rx.lo),
            PY(rx.lo), PX(rx.hi), PY(rx.hi));
    for (int sgn = -1; p->band > 0 && sgn <= 1; sgn += 2) {
      const double k = 1.0 + sgn * p->band;
      fprintf(f,
              "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#888\" stroke-dasharray=\"4 "
              "3\"/>\n",
              PX(rx.lo), PY(k * rx.lo), PX(rx.hi), PY(k * rx.hi));
    }
  }
  if (p->vline && isfinite(p->vline_x)) {
    fprintf(f,
            "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#d62728\" "
            "stroke-dasharray=\"6 4\"/>\n",
            PX(p->vline_x), y0, PX(p->vline_x), y0 + h);
    if (p->vline_label) {
      fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"11\" fill=\"#d62728\">",
              PX(p->vline_x) - 4, y0 + h - 8);
      put_text(f, p->vline_label);
      fputs("</text>\n", f);
    }
  }
  for (int s = 0; s < p->nseries; s++) {
    const hsc_plot_series *ps = &p->series[s];
    if (ps->line) {
      fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"", ps->color);
      for (int i = 0; i < ps->n; i++)
        if (isfinite(ps->x[i]) && isfinite(ps->y[i])) fprintf(f, " %.2f,%.2f", PX(ps->x[i]), PY(ps->y[i]));
      fputs("\"/>\n", f);
    }
    if (ps->line == 2) continue;
    for (int i = 0; i < ps->n; i++) {
      const double x = ps->x[i], y = ps->y[i];
      if (!isfinite(x) || !isfinite(y)) continue;
      fprintf(f, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"%g\" fill=\"%s\" fill-opacity=\"0.7\"/>\n", PX(x),
              PY(y), ps->radius > 0 ? ps->radius : 3.0, ps->color);
    }
  }
  fputs("</g>\n", f);
  for (int s = 0; s < p->nseries; s++) { /* legend */
    const double ly = y0 + 16 + 16 * s;
    if (p->series[s].line)
      fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"1.5\"/>",
              x0 + 6, ly - 4, x0 + 18, ly - 4, p->series[s].color);
    if (p->series[s].line != 2)
      fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"%s\"/>", x0 + 12, ly - 4,
              p->series[s].color);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\">", x0 + 22, ly);
    put_text(f, p->series[s].label);
    fputs("</text>\n", f);
  }
  if (p->diagonal && p->band > 0)
    fprintf(f,
            "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" fill=\"#666\">dashed: y = x \xc2\xb1 %g%%</text>\n",
            x0 + 8, y0 + 16 + 16 * p->nseries, p->band * 100);
#undef PX
#undef PY
}

hsc_status hsc_plot_svg(const char *path, const char *title, const char *subtitle,
                        const hsc_plot_panel *panels, int npanels, hsc_error *err) {
  char tmp[4200];
  if (snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof tmp)
    return hsc_error_set(err, HSC_ERR_INPUT, "%s: path too long", path);
  FILE *f = fopen(tmp, "w");
  if (!f) return hsc_error_set(err, HSC_ERR_IO, "cannot write plot %s: %s", tmp, strerror(errno));
  const int width = PANEL_W * npanels, height = PANEL_H + TITLE_H;
  fprintf(f,
          "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
          "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
          "font-family=\"sans-serif\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
          "<text x=\"%d\" y=\"20\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">",
          width, height, width, height, width / 2);
  put_text(f, title);
  fputs("</text>\n", f);
  if (subtitle) {
    /* About 6 pixels per character at 11 px: cut what would not fit. */
    char cut[512];
    const size_t fit = (size_t)(width / 6.2);
    snprintf(cut, sizeof cut, "%s", subtitle);
    if (strlen(cut) > fit && fit > 3 && fit < sizeof cut) strcpy(cut + fit - 3, "...");
    fprintf(f, "<text x=\"%d\" y=\"37\" text-anchor=\"middle\" font-size=\"11\" fill=\"#444\">", width / 2);
    put_text(f, cut);
    fputs("</text>\n", f);
  }
  for (int i = 0; i < npanels; i++) panel(f, &panels[i], (double)i * PANEL_W, TITLE_H);
  fputs("</svg>\n", f);
  int bad = ferror(f);
  bad |= fclose(f) != 0;
  if (bad || rename(tmp, path) != 0) {
    const int e = errno;
    unlink(tmp);
    return hsc_error_set(err, HSC_ERR_IO, "cannot write plot %s: %s", path, strerror(e));
  }
  return HSC_OK;
}
