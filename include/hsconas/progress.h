/* Progress of a long loop: a bar with the share done and the time left on a terminal (stderr), a log line
 * at every tenth otherwise (batch jobs, pipes). Rank-local; callers show it on one rank. */
#ifndef HSCONAS_PROGRESS_H
#define HSCONAS_PROGRESS_H

typedef struct {
  char what[64];
  double total, done;
  double start, last_draw;
  int tty, enabled, last_tenth;
} hsc_progress;

void hsc_progress_begin(hsc_progress *p, const char *what, double total, int enabled);
/* Sets the amount done (in the units of total). Draws at most every 0.2 s on a terminal. */
void hsc_progress_update(hsc_progress *p, double done);
/* Finishes the bar (a newline on a terminal) and logs the elapsed time. */
void hsc_progress_end(hsc_progress *p);

#endif
