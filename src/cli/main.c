/* The hsconas command: parses the command line and calls the library (no logic here). */
#include <stdio.h>
#include <string.h>

#include "hsconas/backend.h"
#include "hsconas/core.h"

/* Exit statuses (DESIGN.md §4). */
enum { EXIT_DONE = 0, EXIT_ERROR = 1, EXIT_USAGE = 2, EXIT_STOPPED = 3 };

static void usage(FILE *out) {
  fprintf(out,
          "usage: hsconas COMMAND [ARGS]\n"
          "\n"
          "commands in this build:\n"
          "  help              this text\n"
          "  version           program version and the backends this build has\n"
          "  devices           describe the device each backend would use on this rank\n"
          "\n"
          "exit status: 0 done, 1 error, 2 usage, 3 stopped by a signal after a checkpoint\n");
}

static int cmd_version(void) {
  printf("hsconas %s\nbackends: %s\n", HSC_VERSION, hsc_backend_list());
  return EXIT_DONE;
}

static int cmd_devices(void) {
  const char *list = hsc_backend_list();
  char names[64];
  snprintf(names, sizeof names, "%s", list);
  int status = EXIT_DONE;
  for (char *save = NULL, *name = strtok_r(names, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
    hsc_error err = {0};
    const hsc_backend *be = hsc_backend_find(name, &err);
    hsc_backend_ctx *ctx = NULL;
    hsc_backend_opts opts = {.threads = 0, .device = -1};
    if (!be || be->init(&ctx, &opts, &err) != HSC_OK) {
      printf("%s: unavailable: %s\n", name, err.msg);
      continue;
    }
    char desc[512];
    be->describe(ctx, desc, sizeof desc);
    printf("%s\n", desc);
    be->free(ctx);
  }
  return status;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return EXIT_USAGE;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
    usage(stdout);
    return EXIT_DONE;
  }
  if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) return cmd_version();
  if (!strcmp(cmd, "devices")) {
    hsc_proc_init(&argc, &argv);
    int rc = cmd_devices();
    hsc_proc_finalize();
    return rc;
  }
  fprintf(stderr, "hsconas: unknown command '%s' (see 'hsconas help')\n", cmd);
  return EXIT_USAGE;
}
