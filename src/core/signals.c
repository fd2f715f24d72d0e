/* Signal flag (signals.h). The flag is the one piece of mutable process-wide state outside the process
 * record: a signal handler can communicate only through a static volatile sig_atomic_t. It is written by
 * the handler and read by hsc_signals_pending, nothing else. */
#include <signal.h>
#include <string.h>

#include "hsconas/core.h"
#include "hsconas/signals.h"

static volatile sig_atomic_t received;

static void on_signal(int sig) {
  if (!received) received = sig;
}

void hsc_signals_install(void) {
  static const int sigs[] = {SIGTERM, SIGUSR1, SIGINT};
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  /* SA_RESTART: a signal during a blocking read or an MPI wait resumes it; the loops poll the flag. */
  sa.sa_flags = SA_RESTART;
  if (sigemptyset(&sa.sa_mask) != 0) hsc_fatal("sigemptyset failed");
  for (size_t i = 0; i < ARRAY_LEN(sigs); i++)
    if (sigaction(sigs[i], &sa, NULL) != 0) hsc_fatal("sigaction(%d) failed", sigs[i]);
}

int hsc_signals_pending(void) { return (int)received; }
