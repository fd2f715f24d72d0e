/* Progress bar / progress lines (progress.h). */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "hsconas/core.h"
#include "hsconas/progress.h"

static void format_time(double s, char *buf, size_t len) {
  if (s < 0) s = 0;
  const long t = (long)(s + 0.5);
  if (t >= 3600)
    snprintf(buf, len, "%ldh%02ldm", t / 3600, t / 60 % 60);
  else if (t >= 60)
    snprintf(buf, len, "%ldm%02lds", t / 60, t % 60);
  else
    snprintf(buf, len, "%lds", t);
}

void hsc_progress_begin(hsc_progress *p, const char *what, double total, int enabled) {
  memset(p, 0, sizeof *p);
  snprintf(p->what, sizeof p->what, "%s", what);
  p->total = total > 0 ? total : 1;
  p->start = p->last_draw = hsc_now();
  p->enabled = enabled;
  p->tty = enabled && isatty(STDERR_FILENO);
}

void hsc_progress_update(hsc_progress *p, double done) {
  p->done = done;
  if (!p->enabled) return;
  const double now = hsc_now(), frac = done / p->total, el = now - p->start;
  char left[32] = "?";
  if (frac > 0) format_time(el / frac - el, left, sizeof left);
  if (p->tty) {
    if (now - p->last_draw < 0.2 && frac < 1) return;
    p->last_draw = now;
    enum { WIDTH = 30 };
    char bar[WIDTH + 1];
    const int fill = (int)(frac * WIDTH);
    for (int i = 0; i < WIDTH; i++) bar[i] = i < fill ? '#' : '.';
    bar[WIDTH] = '\0';
    fprintf(stderr, "\r%s [%s] %3d%%  %s left ", p->what, bar, (int)(frac * 100), left);
    fflush(stderr);
    return;
  }
  const int tenth = (int)(frac * 10);
  if (tenth <= p->last_tenth || tenth >= 10) return;
  p->last_tenth = tenth;
  char elapsed[32];
  format_time(el, elapsed, sizeof elapsed);
  hsc_log(HSC_LOG_INFO, "%s: %d%% done, %s elapsed, about %s left", p->what, tenth * 10, elapsed, left);
}

void hsc_progress_end(hsc_progress *p) {
  if (!p->enabled) return;
  if (p->tty) fputc('\n', stderr);
  char elapsed[32];
  format_time(hsc_now() - p->start, elapsed, sizeof elapsed);
  hsc_log(HSC_LOG_INFO, "%s: done in %s", p->what, elapsed);
}
