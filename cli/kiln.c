/* SPDX-License-Identifier: Apache-2.0 */
/* kiln: the command-line client of kilnd. buildah-like verbs; it talks only D-Bus. */
#include <locale.h>
#include <stdio.h>
#include <string.h>

#include <glib.h>

#include "cli-util.h"
#include "kiln-build-config.h"
#include "verbs.h"

typedef struct {
        const char *name;
        int (*run)(int argc, char **argv);
        const char *summary;
} Verb;

static const Verb verbs[] = {
        {"from", kiln_verb_from, "Create a builder from scratch, a directory or an OCI image"},
        {"containers", kiln_verb_containers, "List builders"},
        {"inspect", kiln_verb_inspect, "Show a builder's properties as JSON"},
        {"config", kiln_verb_config, "Change a builder's configuration"},
        {"run", kiln_verb_run, "Run a command in a builder"},
        {"rm", kiln_verb_rm, "Remove builders"},
        {"prune", kiln_verb_prune, "Remove your --mount type=cache caches"},
        {"mount", kiln_verb_mount, "Mount a builder's root file system on the host"},
        {"umount", kiln_verb_umount, "Unmount a builder's root file system"},
        {"copy", kiln_verb_copy, "Copy files into a builder, or out of it"},
        {"add", kiln_verb_add, "Copy files into a builder, unpacking local tar archives"},
        {"commit", kiln_verb_commit, "Write a builder's changes as a new image"},
        {"images", kiln_verb_images, "List images"},
        {"rmi", kiln_verb_rmi, "Remove images"},
        {"tag", kiln_verb_tag, "Give an image more names"},
        {"push", kiln_verb_push, "Write an image to an archive or an OCI layout"},
        {"info", kiln_verb_info, "Show the service's runtimes, defaults, your storage and limits"},
        {"version", kiln_verb_version, "Show the versions of kiln and of kilnd"},
};

static void print_help(void)
{
        printf("Usage:\n"
               "  kiln [--version] [--help] [--no-ask-password] VERB [OPTION…] [ARGUMENT…]\n\n"
               "Build containers through the kilnd system service.\n\n"
               "Options:\n"
               "  -h, --help           Show this help\n"
               "  -v, --version        Show kiln's version\n"
               "  --no-ask-password    Never ask for a password (polkit); fail instead\n\n"
               "Verbs:\n");
        for (size_t i = 0; i < G_N_ELEMENTS(verbs); i++)
                printf("  %-12s %s\n", verbs[i].name, verbs[i].summary);
        printf("\nRun 'kiln VERB --help' for a verb's options.\n");
}

static const Verb *find_verb(const char *name)
{
        for (size_t i = 0; i < G_N_ELEMENTS(verbs); i++)
                if (g_str_equal(verbs[i].name, name))
                        return &verbs[i];
        return NULL;
}

int main(int argc, char **argv)
{
        g_autofree char *prgname = NULL;
        const Verb *verb;
        int i;

        /* The two categories kiln's output depends on: the terminal's character set (GLib converts
         * --help text to it) and GLib's own translated messages. Numbers, dates and sorting stay those
         * of C, as scripts reading kiln's output expect; and where a locale is not in an archive each
         * category is a file to load, ~0.3 ms of every command for all thirteen (docs/performance.md). */
        setlocale(LC_CTYPE, "");
        setlocale(LC_MESSAGES, "");

        /* The global options, before the verb. */
        for (i = 1; i < argc && argv[i][0] == '-'; i++) {
                if (g_str_equal(argv[i], "--version") || g_str_equal(argv[i], "-v")) {
                        printf("kiln version %s\n", KILN_VERSION);
                        return KILN_EXIT_SUCCESS;
                }
                if (g_str_equal(argv[i], "--help") || g_str_equal(argv[i], "-h")) {
                        print_help();
                        return KILN_EXIT_SUCCESS;
                }
                if (g_str_equal(argv[i], "--no-ask-password")) {
                        kiln_set_no_ask_password(true);
                        continue;
                }
                if (g_str_has_prefix(argv[i], "--no-ask-password=")) {
                        const char *text = argv[i] + strlen("--no-ask-password=");
                        bool value;
                        if (!kiln_parse_bool(text, &value)) {
                                kiln_log("--no-ask-password takes true or false, not '%s'", text);
                                return KILN_EXIT_FAILURE;
                        }
                        kiln_set_no_ask_password(value);
                        continue;
                }
                kiln_log("unknown option '%s' (see 'kiln --help')", argv[i]);
                return KILN_EXIT_FAILURE;
        }
        if (i >= argc) {
                kiln_log("missing verb (see 'kiln --help')");
                return KILN_EXIT_FAILURE;
        }

        verb = find_verb(argv[i]);
        if (!verb) {
                kiln_log("unknown verb '%s' (see 'kiln --help')", argv[i]);
                return KILN_EXIT_FAILURE;
        }

        /* GOptionContext's --help output reads "Usage: kiln VERB [OPTION…] …". */
        prgname = g_strdup_printf("kiln %s", verb->name);
        g_set_prgname(prgname);
        return verb->run(argc - i, argv + i);
}
