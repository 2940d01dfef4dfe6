/* cli.h -- the offline bulk CLI: `embedserve embed ...`, built on the
 * pipeline (pipeline/embed.h) like the server, so both give the same vectors.
 *
 * Thread-safety: call from main's thread only (it owns stdin/stdout and
 * parses argv with getopt, which keeps global state). */
#ifndef EMB_CLI_H
#define EMB_CLI_H

/* Runs the `embed` subcommand; argv[0] is "embed". Returns the process exit
 * status (0 ok, 1 runtime failure, 2 usage error). Prints to stderr. */
int cli_embed_main(int argc, char **argv);

#endif
