/* Scatter plots as standalone SVG files (no plotting library on compute nodes): side-by-side panels, each
 * with linear axes, "nice" ticks, point series in their own colours and a legend, optionally the diagonal
 * y = x with a relative band around it (predicted against measured). */
#ifndef HSCONAS_PLOT_H
#define HSCONAS_PLOT_H

#include "hsconas/core.h"

typedef struct {
  const double *x, *y; /* [n] */
  int n;
  const char *label; /* legend text */
  const char *color; /* SVG colour, e.g. "#1f77b4" */
  int line;          /* 0: markers only; 1: markers joined by a line in point order; 2: the line only */
  double radius;     /* marker radius in pixels (0: 3) */
} hsc_plot_series;

enum { HSC_PLOT_MAX_SERIES = 8 };

typedef struct {
  const char *title, *xlabel, *ylabel;
  hsc_plot_series series[HSC_PLOT_MAX_SERIES];
  int nseries;
  int diagonal; /* draw y = x (and the band, when band > 0) */
  double band;  /* relative: 0.1 draws y = 0.9 x and y = 1.1 x */
  int vline;    /* draw a dashed vertical line at x = vline_x, labelled vline_label (may be NULL) */
  double vline_x;
  const char *vline_label;
} hsc_plot_panel;

/* Writes the panels side by side to path (through a temporary file and a rename), under a bold title and a
 * smaller subtitle (NULL: none; cut to the figure's width). The axes of each panel span its data with a
 * margin; a panel with the diagonal gets equal x and y ranges. Errors name the file. */
hsc_status hsc_plot_svg(const char *path, const char *title, const char *subtitle,
                        const hsc_plot_panel *panels, int npanels, hsc_error *err);

#endif
