/* SIGTERM and SIGUSR1 (Slurm's warning before a time limit or preemption) and SIGINT: the handler only
 * records the signal; long-running loops poll it at step boundaries, agree over their communicator, write
 * a checkpoint and return HSC_ERR_STOPPED, which the command turns into exit status 3 (DESIGN.md §5). */
#ifndef HSCONAS_SIGNALS_H
#define HSCONAS_SIGNALS_H

/* Installs the handlers (idempotent). */
void hsc_signals_install(void);
/* The first signal received since start-up, or 0. */
int hsc_signals_pending(void);

#endif
