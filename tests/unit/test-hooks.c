/* SPDX-License-Identifier: Apache-2.0 */
/* hooks.d files (spec/hooks.h): what parses, what is refused and names the member, and which runs a
 * file's conditions match; then the directories (run/run-hooks.h): order, a later directory's file
 * replacing an earlier one's, broken and non-JSON files skipped. */
#include <glib/gstdio.h>
#include <string.h>

#include "run/run-hooks.h"
#include "spec/hooks.h"

static KilnHookFile *parse(const char *text)
{
        g_autoptr(GError) error = NULL;
        KilnHookFile *f = kiln_hook_file_parse(text, strlen(text), &error);

        g_assert_no_error(error);
        g_assert_nonnull(f);
        return f;
}

static void test_parse(void)
{
        g_autoptr(KilnHookFile) f = parse(
                "{\"version\": \"1.0.0\", \"hook\": {\"path\": \"/usr/bin/h\", \"args\": [\"h\", \"-x\"], "
                "\"env\": [\"A=1\"], \"timeout\": 7}, \"when\": {\"always\": true}, "
                "\"stages\": [\"prestart\", \"poststop\", \"prestart\"], \"unknown\": 1}");
        g_autoptr(GArray) hooks = g_array_new(FALSE, TRUE, sizeof(KilnHook));
        KilnHook *h;

        kiln_hook_file_add(f, hooks);
        /* A stage named twice is injected once. */
        g_assert_cmpuint(hooks->len, ==, 2);
        h = &g_array_index(hooks, KilnHook, 0);
        g_assert_cmpstr(h->stage, ==, "prestart");
        g_assert_cmpstr(h->path, ==, "/usr/bin/h");
        g_assert_cmpstr(h->args[1], ==, "-x");
        g_assert_null(h->args[2]);
        g_assert_cmpstr(h->env[0], ==, "A=1");
        g_assert_cmpint(h->timeout, ==, 7);
        g_assert_cmpstr(g_array_index(hooks, KilnHook, 1).stage, ==, "poststop");
}

static const struct {
        const char *text;
        const char *member; /* what the error names */
} bad_files[] = {
        {"", "hooks file"},
        {"[]", "hooks file"},
        {"{\"hook\": {\"path\": \"/h\"}, \"when\": {\"always\": true}, \"stages\": [\"prestart\"]}",
         "version"},
        {"{\"version\": \"0.1.0\", \"hook\": \"/h\", \"stages\": [\"prestart\"]}", "version"},
        {"{\"version\": \"1.0.0\", \"when\": {\"always\": true}, \"stages\": [\"prestart\"]}", "hook"},
        {"{\"version\": \"1.0.0\", \"hook\": {\"path\": \"h\"}, \"when\": {\"always\": true}, \"stages\": "
         "[\"prestart\"]}",
         "hook.path"},
        {"{\"version\": \"1.0.0\", \"hook\": {\"path\": \"/h\", \"args\": [1]}, \"when\": {\"always\": "
         "true}, "
         "\"stages\": [\"prestart\"]}",
         "hook.args"},
        {"{\"version\": \"1.0.0\", \"hook\": {\"path\": \"/h\", \"env\": [\"NOEQUALS\"]}, \"when\": "
         "{\"always\": true}, "
         "\"stages\": [\"prestart\"]}",
         "hook.env"},
        {"{\"version\": \"1.0.0\", \"hook\": {\"path\": \"/h\", \"timeout\": 0}, \"when\": {\"always\": "
         "true}, "
         "\"stages\": [\"prestart\"]}",
         "hook.timeout"},
        {"{\"version\": \"1.0.0\", \"hook\": {\"path\": \"/h\"}, \"when\": {}, \"stages\": [\"prestart\"]}",
         "when"},
        {"{\"version\": \"1.0.0\", \"hook\": {\"path\": \"/h\"}, \"when\": {\"always\": \"yes\"}, "
         "\"stages\": [\"prestart\"]}",
         "when.always"},
        {"{\"version\": \"1.0.0\", \"hook\": {\"path\": \"/h\"}, \"when\": {\"commands\": [\"(\"]}, "
         "\"stages\": [\"prestart\"]}",
         "when.commands[0]"},
        {"{\"version\": \"1.0.0\", \"hook\": {\"path\": \"/h\"}, \"when\": {\"annotations\": {\"a\": "
         "\"[\"}}, "
         "\"stages\": [\"prestart\"]}",
         "when.annotations[a]"},
        {"{\"version\": \"1.0.0\", \"hook\": {\"path\": \"/h\"}, \"when\": {\"always\": true}, \"stages\": "
         "[]}",
         "stages"},
        {"{\"version\": \"1.0.0\", \"hook\": {\"path\": \"/h\"}, \"when\": {\"always\": true}, \"stages\": "
         "[\"prestop\"]}",
         "stages"},
        {"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
         "[[[[[",
         "hooks file"},
};

static void test_refused(void)
{
        g_autofree char *big = g_strnfill(KILN_HOOK_FILE_MAX_BYTES + 1, ' ');
        g_autoptr(GError) error = NULL;

        for (gsize i = 0; i < G_N_ELEMENTS(bad_files); i++) {
                g_autoptr(GError) e = NULL;
                KilnHookFile *f = kiln_hook_file_parse(bad_files[i].text, strlen(bad_files[i].text), &e);
                g_test_message("%s: %s", bad_files[i].text, e ? e->message : "(accepted)");
                g_assert_null(f);
                g_assert_error(e, KILN_ERROR, KILN_ERROR_CODE_INVALID_ARGUMENT);
                if (!strstr(e->message, bad_files[i].member))
                        g_error("'%s' does not name %s", e->message, bad_files[i].member);
        }
        g_assert_null(kiln_hook_file_parse(big, strlen(big), &error));
        g_assert_error(error, KILN_ERROR, KILN_ERROR_CODE_LIMIT_EXCEEDED);
}

static gboolean matches(const char *when, const char *const *annotations, const char *command,
                        gboolean binds)
{
        g_autofree char *text = g_strdup_printf("{\"version\": \"1.0.0\", \"hook\": {\"path\": \"/h\"}, "
                                                "\"when\": %s, \"stages\": [\"prestart\"]}",
                                                when);
        g_autoptr(KilnHookFile) f = parse(text);
        KilnHookTarget target = {.annotations = annotations, .command = command, .has_bind_mounts = binds};

        return kiln_hook_file_matches(f, &target);
}

static void test_matches(void)
{
        static const char *const labels[] = {"org.example.gpu=yes", "other=x=y", "empty=", NULL};

        g_assert_true(matches("{\"always\": true}", NULL, "/bin/sh", FALSE));
        g_assert_false(matches("{\"always\": false}", NULL, "/bin/sh", FALSE));
        /* Every condition set must hold; a false one never does. */
        g_assert_false(matches("{\"always\": false, \"commands\": [\".*\"]}", NULL, "/bin/sh", FALSE));
        g_assert_false(matches("{\"always\": true, \"commands\": [\"/init$\"]}", NULL, "/bin/sh", FALSE));
        g_assert_true(matches("{\"commands\": [\"/init$\", \"/sh$\"]}", NULL, "/bin/sh", FALSE));
        g_assert_false(matches("{\"commands\": [\"^sh$\"]}", NULL, "/bin/sh", FALSE));
        g_assert_true(matches("{\"commands\": [\"sh\"]}", NULL, "/bin/sh", FALSE)); /* unanchored */
        g_assert_true(matches("{\"hasBindMounts\": true}", NULL, "/bin/sh", TRUE));
        g_assert_false(matches("{\"hasBindMounts\": true}", NULL, "/bin/sh", FALSE));
        g_assert_false(matches("{\"hasBindMounts\": false}", NULL, "/bin/sh", FALSE));
        g_assert_true(matches("{\"annotations\": {\"^org\\\\.example\\\\.gpu$\": \"^yes$\"}}", labels, "/x",
                              FALSE));
        g_assert_false(matches("{\"annotations\": {\"^org\\\\.example\\\\.gpu$\": \"^no$\"}}", labels, "/x",
                               FALSE));
        g_assert_false(
                matches("{\"annotations\": {\"^org\\\\.example\\\\.gpu$\": \"yes\"}}", NULL, "/x", FALSE));
        /* The value is what follows the first '='; an empty value matches ^$. */
        g_assert_true(matches("{\"annotations\": {\"^other$\": \"^x=y$\", \"^empty$\": \"^$\"}}", labels,
                              "/x", FALSE));
        /* Every pair must find its annotation. */
        g_assert_false(matches("{\"annotations\": {\"^other$\": \"x\", \"^missing$\": \".*\"}}", labels,
                               "/x", FALSE));
        g_assert_true(matches(
                "{\"annotations\": {\"gpu\": \"yes\"}, \"commands\": [\"/x\"], \"hasBindMounts\": true}",
                labels, "/x", TRUE));
        g_assert_false(matches(
                "{\"annotations\": {\"gpu\": \"yes\"}, \"commands\": [\"/x\"], \"hasBindMounts\": true}",
                labels, "/x", FALSE));
}

static void write_file(const char *dir, const char *name, const char *stage)
{
        g_autofree char *path = g_build_filename(dir, name, NULL);
        g_autofree char *base = g_path_get_basename(dir);
        g_autofree char *text = g_strdup_printf("{\"version\": \"1.0.0\", \"hook\": {\"path\": \"/%s/%s\"}, "
                                                "\"when\": {\"always\": true}, \"stages\": [\"%s\"]}",
                                                base, name, stage);
        g_assert_true(g_file_set_contents(path, text, -1, NULL));
}

/* glibc's regcomp copies what a repetition applies to: expressions whose copies multiply past the bound
 * are refused before regcomp (one of them, found by fuzz-hooks, took 2 GiB), usual ones still compile. */
static void test_expression_size(void)
{
        g_autofree char *open = g_strnfill(65, '('), *close = g_strnfill(65, ')'),
                        *pluses = g_strnfill(40, '+');
        g_autofree char *deep = g_strconcat(open, "a", close, NULL),
                        *chain = g_strconcat("^ye", pluses, NULL);
        const char *refused[] = {
                chain,                                          /* 2^40 copies */
                "((((((((((((((a+)+)+)+)+)+)+)+)+)+)+)+)+)+)+", /* 2^14 */
                "a{1001}",
                "(a{1000}){1000}",
                deep,
                "^ye+?+++++++++++s ", /* 4,096 nodes, but 2.9 s in regcomp: repetitions 13 deep */
                "((a+)*b)+?",         /* 4 deep through groups */
        };
        const char *accepted[] = {"^org\\.gpu$", "a{1000}",    "(ab)+c*[[:alpha:]]{2,3}",
                                  "[]a+]+",      "(a|b){2,}c", "a**",
                                  "((a+)*b)+",   "x+?"};

        for (gsize i = 0; i < G_N_ELEMENTS(refused); i++) {
                g_autofree char *text = g_strdup_printf(
                        "{\"version\": \"1.0.0\", \"hook\": {\"path\": \"/h\"}, \"when\": {\"commands\": "
                        "[\"%s\"]}, \"stages\": [\"prestart\"]}",
                        refused[i]);
                g_autoptr(GError) e = NULL;
                KilnHookFile *f = kiln_hook_file_parse(text, strlen(text), &e);

                g_test_message("%s: %s", refused[i], e ? e->message : "(accepted)");
                g_assert_null(f);
                g_assert_error(e, KILN_ERROR, KILN_ERROR_CODE_INVALID_ARGUMENT);
                g_assert_nonnull(strstr(e->message, "when.commands[0]"));
                g_assert_nonnull(strstr(e->message, "refused"));
        }
        for (gsize i = 0; i < G_N_ELEMENTS(accepted); i++) {
                g_autofree char *when = g_strdup_printf("{\"commands\": [\"%s\"]}", accepted[i]);
                g_test_message("%s", accepted[i]);
                (void)matches(when, NULL, "x", FALSE);
        }
}

static void test_directories(void)
{
        g_autofree char *top = g_dir_make_tmp("kiln-hooks-XXXXXX", NULL);
        g_autofree char *usr = g_build_filename(top, "usr", NULL);
        g_autofree char *etc = g_build_filename(top, "etc", NULL);
        g_autofree char *missing = g_build_filename(top, "missing", NULL);
        g_autofree char *broken = g_build_filename(etc, "00-broken.json", NULL);
        const char *const dirs[] = {usr, missing, etc, NULL};
        const KilnHookTarget target = {.command = "/bin/sh"};
        g_autoptr(GPtrArray) files = NULL;
        g_autoptr(GArray) hooks = g_array_new(FALSE, TRUE, sizeof(KilnHook));
        g_autofree char *rm = NULL;
        static const char *const expected[] = {"/etc/01-B.json", "/usr/02-a.json", "/etc/03-same.json",
                                               "/usr/04-usr.json"};

        g_assert_cmpint(g_mkdir(usr, 0755), ==, 0);
        g_assert_cmpint(g_mkdir(etc, 0755), ==, 0);
        write_file(usr, "02-a.json", "prestart");
        write_file(etc, "01-B.json", "prestart");
        write_file(usr, "03-same.json", "prestart");
        write_file(etc, "03-same.json", "poststop"); /* replaces /usr's */
        write_file(usr, "04-usr.json", "prestart");
        write_file(usr, "05-not-json.txt", "prestart");
        g_assert_true(g_file_set_contents(broken, "{\"version\": ", -1, NULL));

        g_test_expect_message(G_LOG_DOMAIN, G_LOG_LEVEL_WARNING, "*00-broken.json*");
        files = kiln_hooks_load(dirs);
        g_test_assert_expected_messages();
        kiln_hooks_select(files, &target, hooks);
        g_assert_cmpuint(hooks->len, ==, G_N_ELEMENTS(expected));
        for (guint i = 0; i < hooks->len; i++)
                g_assert_cmpstr(g_array_index(hooks, KilnHook, i).path, ==, expected[i]);
        g_assert_cmpstr(g_array_index(hooks, KilnHook, 2).stage, ==, "poststop");
        rm = g_strdup_printf("rm -rf '%s'", top);
        g_assert_cmpint(system(rm), ==, 0);
}

int main(int argc, char **argv)
{
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/hooks/parse", test_parse);
        g_test_add_func("/hooks/refused", test_refused);
        g_test_add_func("/hooks/matches", test_matches);
        g_test_add_func("/hooks/expression-size", test_expression_size);
        g_test_add_func("/hooks/directories", test_directories);
        return g_test_run();
}
