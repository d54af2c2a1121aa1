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

bool kiln_parse_bool(const char *text, bool *ret)
{
        /* The spellings buildah's flags (Go's strconv.ParseBool) take. */
        static const char *const yes[] = {"1", "t", "T", "true", "TRUE", "True", NULL};
        static const char *const no[] = {"0", "f", "F", "false", "FALSE", "False", NULL};

        if (g_strv_contains(yes, text))
                *ret = true;
        else if (g_strv_contains(no, text))
                *ret = false;
        else
                return false;
        return true;
}

static const GOptionEntry *find_long(const GOptionEntry *entries, const char *name, gsize len)
{
        for (; entries && entries->long_name; entries++)
                if (strlen(entries->long_name) == len && strncmp(entries->long_name, name, len) == 0)
                        return entries;
        return NULL;
}

static const GOptionEntry *find_short(const GOptionEntry *entries, char name)
{
        for (; entries && entries->long_name; entries++)
                if (name && entries->short_name == name)
                        return entries;
        return NULL;
}

static bool is_switch(const GOptionEntry *e)
{
        return e && e->arg == G_OPTION_ARG_NONE && !(e->flags & G_OPTION_FLAG_REVERSE);
}

static bool takes_value(const GOptionEntry *e)
{
        return e && e->arg != G_OPTION_ARG_NONE &&
               !(e->arg == G_OPTION_ARG_CALLBACK && (e->flags & G_OPTION_FLAG_NO_ARG));
}

/* Whether argv[i] is a cluster of short switches only ("-t", "-af"); sets them. */
static bool take_short_switches(const GOptionEntry *entries, const char *arg)
{
        for (const char *c = arg + 1; *c; c++)
                if (!is_switch(find_short(entries, *c)))
                        return false;
        for (const char *c = arg + 1; *c; c++)
                *(gboolean *)find_short(entries, *c)->arg_data = TRUE;
        return true;
}

/* The global switches, also taken after the verb (as systemctl's): found when the verb has no
 * option of that name. Their arg_data is not used: taking one calls its setter. */
static const GOptionEntry global_switches[] = {
        {"no-ask-password", 0, 0, G_OPTION_ARG_NONE, NULL, NULL, NULL},
        {NULL},
};

static void set_global_switch(const GOptionEntry *e, bool value)
{
        if (e == &global_switches[0])
                kiln_set_no_ask_password(value);
}

bool kiln_take_switches(const GOptionEntry *entries, bool stop_at_operand, int *argc, char ***argv,
                        GError **error)
{
        int out = 1;

        for (int i = 1; i < *argc; i++) {
                const char *arg = (*argv)[i];
                const GOptionEntry *e = NULL;
                bool value = true;

                if (g_str_equal(arg, "--")) {
                        /* Everything from here on belongs to the verb (or the command). */
                        while (i < *argc)
                                (*argv)[out++] = (*argv)[i++];
                        break;
                }
                if (g_str_has_prefix(arg, "--")) {
                        const char *eq = strchr(arg, '=');
                        gsize len = eq ? (gsize)(eq - arg - 2) : strlen(arg + 2);
                        bool global = false;

                        e = find_long(entries, arg + 2, len);
                        if (!e) {
                                e = find_long(global_switches, arg + 2, len);
                                global = e != NULL;
                        }
                        if (is_switch(e)) {
                                if (eq && !kiln_parse_bool(eq + 1, &value)) {
                                        g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                                                    "--%s takes true or false, not '%s'", e->long_name,
                                                    eq + 1);
                                        return false;
                                }
                                if (global)
                                        set_global_switch(e, value);
                                else
                                        *(gboolean *)e->arg_data = value;
                                continue;
                        }
                        (*argv)[out++] = (*argv)[i];
                        if (takes_value(e) && !eq && i + 1 < *argc)
                                (*argv)[out++] = (*argv)[++i];
                        continue;
                }
                if (arg[0] == '-' && arg[1]) {
                        if (take_short_switches(entries, arg))
                                continue;
                        e = find_short(entries, arg[1]);
                        (*argv)[out++] = (*argv)[i];
                        if (takes_value(e) && !arg[2] && i + 1 < *argc)
                                (*argv)[out++] = (*argv)[++i];
                        continue;
                }
                if (stop_at_operand) {
                        while (i < *argc)
                                (*argv)[out++] = (*argv)[i++];
                        break;
                }
                (*argv)[out++] = (*argv)[i];
        }
        (*argv)[out] = NULL;
        *argc = out;
        return true;
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

        if (!kiln_take_switches(entries, false, argc, argv, &error) ||
            !g_option_context_parse(context, argc, argv, &error)) {
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
