/* SPDX-License-Identifier: Apache-2.0 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli-util.h"

void kiln_log(const char *format, ...)
{
        va_list ap;
        g_autofree char *message = NULL;

        va_start(ap, format);
        message = g_strdup_vprintf(format, ap);
        va_end(ap);

        /* One line, whatever the message holds: a multi-line service message must not look like
         * several errors to a script reading stderr. */
        g_strdelimit(message, "\n", ' ');
        fprintf(stderr, "kiln: %s\n", message);
}

int kiln_usage_error(const char *verb, const char *format, ...)
{
        va_list ap;
        g_autofree char *message = NULL;

        va_start(ap, format);
        message = g_strdup_vprintf(format, ap);
        va_end(ap);

        kiln_log("%s: %s (see 'kiln %s --help')", verb, message, verb);
        return KILN_EXIT_FAILURE;
}

bool kiln_parse_options(const char *verb, const char *parameters, const char *summary,
                        const GOptionEntry *entries, int *argc, char ***argv)
{
        g_autoptr(GOptionContext) context = NULL;
        g_autoptr(GError) error = NULL;

        context = g_option_context_new(parameters);
        g_option_context_set_summary(context, summary);
        if (entries)
                g_option_context_add_main_entries(context, entries, NULL);

        if (!g_option_context_parse(context, argc, argv, &error)) {
                kiln_usage_error(verb, "%s", error->message);
                return false;
        }

        /* A literal "--" ends the options; GLib leaves it in argv, the verb must not see it. */
        for (int i = 1; i < *argc; i++)
                if (g_str_equal((*argv)[i], "--")) {
                        memmove(*argv + i, *argv + i + 1, (*argc - i) * sizeof(char *));
                        (*argc)--;
                        break;
                }

        return true;
}

/* Set once, by main, from the global options; read by the bus code of every verb. */
static bool no_ask_password;

void kiln_set_no_ask_password(bool value)
{
        no_ask_password = value;
}

bool kiln_get_no_ask_password(void)
{
        return no_ask_password;
}

bool kiln_is_interactive(void)
{
        return isatty(STDIN_FILENO) == 1;
}

bool kiln_may_ask_password(void)
{
        return !no_ask_password && kiln_is_interactive();
}
