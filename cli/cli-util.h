/* SPDX-License-Identifier: Apache-2.0 */
/* What every verb of the kiln client shares: the exit convention, messages, option parsing. */
#pragma once

#include <stdbool.h>

#include <glib.h>

/* buildah's convention: 0 on success, 125 when kiln itself fails (bus errors, usage errors). */
#define KILN_EXIT_SUCCESS 0
#define KILN_EXIT_FAILURE 125

/* Prints "kiln: <message>" on stderr, as one line. */
void kiln_log(const char *format, ...) G_GNUC_PRINTF(1, 2);

/* Prints "kiln: VERB: <message> (see 'kiln VERB --help')" and returns KILN_EXIT_FAILURE. */
int kiln_usage_error(const char *verb, const char *format, ...) G_GNUC_PRINTF(2, 3);

/* Parses a verb's options from argv (argv[0] is the verb). On success argc/argv keep only the
 * verb and its positional arguments. --help prints and exits 0 (GLib does that). On a bad
 * option it prints a usage error and returns false. */
bool kiln_parse_options(const char *verb, const char *parameters, const char *summary,
                        const GOptionEntry *entries, int *argc, char ***argv);

/* The global option --no-ask-password: polkit must not ask for a password, kiln starts no agent. */
void kiln_set_no_ask_password(bool value);
bool kiln_get_no_ask_password(void);

/* Whether stdin is a terminal. */
bool kiln_is_interactive(void);

/* Whether the caller may be asked for a password: stdin is a terminal and --no-ask-password was
 * not given. */
bool kiln_may_ask_password(void);
