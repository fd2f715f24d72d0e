/* The SVG plot writer: a point of the data lands where the axes say, y = x points lie on the drawn diagonal
 * (a panel with the diagonal has equal x and y ranges), text is escaped, and the file is written whole. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "hsconas/plot.h"

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  char *buf = calloc(1, 1 << 20);
  const size_t n = fread(buf, 1, (1 << 20) - 1, f);
  buf[n] = '\0';
  fclose(f);
  return buf;
}

static void t_points_on_diagonal(hsc_test *t) {
  const double x[4] = {1.0, 2.0, 3.0, 4.0}, y[4] = {1.0, 2.0, 3.0, 4.0};
  const hsc_plot_panel p = {.title = "a <b> & \"c\"",
                            .xlabel = "x",
                            .ylabel = "y",
                            .series = {{x, y, 4, "points", "#123456"}},
                            .nseries = 1,
                            .diagonal = 1,
                            .band = 0.1};
  char path[] = "/tmp/hsc_test_plot_XXXXXX";
  const int fd = mkstemp(path);
  T_REQUIRE(t, fd >= 0);
  close(fd);
  hsc_error err = {0};
  T_REQUIRE(t, hsc_plot_svg(path, "title", "subtitle", &p, 1, &err) == HSC_OK);
  char *svg = slurp(path);
  unlink(path);
  T_REQUIRE(t, svg);
  T_CHECK(t, strstr(svg, "a &lt;b&gt; &amp; &quot;c&quot;") != NULL);
  T_CHECK(t, strstr(svg, "</svg>\n") != NULL);
  /* The data circles (r="3", in data order), then the legend's (r="4"). */
  double cx[4], cy[4];
  int n = 0;
  for (const char *s = svg; n < 4 && (s = strstr(s, "<circle cx=\"")); s++) {
    double a, b;
    if (sscanf(s, "<circle cx=\"%lf\" cy=\"%lf\" r=\"3\"", &a, &b) == 2) cx[n] = a, cy[n] = b, n++;
  }
  T_EQ_INT(t, n, 4);
  /* Equal steps in data are equal steps on the page, x to the right and y up, by the same amount (equal
   * ranges on a square-ish frame are not required: only that each axis is linear and the order right). */
  for (int i = 1; i < n; i++) {
    T_CHECK(t, cx[i] > cx[i - 1] && cy[i] < cy[i - 1]);
    T_NEAR(t, cx[i] - cx[i - 1], cx[1] - cx[0], 0.02);
    T_NEAR(t, cy[i] - cy[i - 1], cy[1] - cy[0], 0.02);
  }
  /* The diagonal is drawn from (lo, lo) to (hi, hi): every y = x point lies on that segment. */
  double x1, y1, x2, y2;
  const char *diag = strstr(svg, "<g clip-path");
  T_REQUIRE(t, diag && sscanf(strstr(diag, "<line"), "<line x1=\"%lf\" y1=\"%lf\" x2=\"%lf\" y2=\"%lf\"", &x1,
                              &y1, &x2, &y2) == 4);
  for (int i = 0; i < n; i++) {
    const double u = (cx[i] - x1) / (x2 - x1), v = (cy[i] - y1) / (y2 - y1);
    T_NEAR(t, u, v, 1e-3);
  }
  free(svg);
}

static void t_write_error_names_file(hsc_test *t) {
  const hsc_plot_panel p = {.title = "t", .xlabel = "x", .ylabel = "y"};
  hsc_error err = {0};
  T_CHECK(t, hsc_plot_svg("/nonexistent-dir/plot.svg", "t", NULL, &p, 1, &err) == HSC_ERR_IO);
  T_CHECK(t, strstr(err.msg, "/nonexistent-dir/plot.svg") != NULL);
}

int main(int argc, char **argv) {
  static const hsc_test_case cases[] = {
      {"points_on_diagonal", t_points_on_diagonal},
      {"write_error_names_file", t_write_error_names_file},
  };
  return hsc_test_main("test_plot", argc, argv, cases, (int)ARRAY_LEN(cases));
}
