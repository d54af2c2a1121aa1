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

/* "true"/"false" and the other spellings buildah's boolean flags take ("1", "t", "FALSE", ...). */
bool kiln_parse_bool(const char *text, bool *ret);

/* Sets and removes from argv the switches of @entries (G_OPTION_ARG_NONE) before GLib parses the rest:
 * GLib takes "--flag=false" as "--flag", while buildah's flags take "--flag", "--flag=true" and
 * "--flag=false" (the last one given counts). Stops at "--", and with @stop_at_operand at the first
 * argument that is not an option (strict POSIX parsing), so a command's own arguments are never
 * touched. A bad value: G_OPTION_ERROR_BAD_VALUE naming the flag. The global switches
 * (--no-ask-password) are taken too, wherever a verb's own switch may be, unless the verb has an
 * option of that name: every verb accepts them after the verb, run up to its command. */
bool kiln_take_switches(const GOptionEntry *entries, bool stop_at_operand, int *argc, char ***argv,
                        GError **error);

/* The global option --no-ask-password: polkit must not ask for a password, kiln starts no agent. */
void kiln_set_no_ask_password(bool value);
bool kiln_get_no_ask_password(void);

/* Whether stdin is a terminal. */
bool kiln_is_interactive(void);

/* Whether the caller may be asked for a password: stdin is a terminal and --no-ask-password was
 * not given. */
bool kiln_may_ask_password(void);
