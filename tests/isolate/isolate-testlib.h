/* SPDX-License-Identifier: Apache-2.0 */
/* Shared by the kiln-isolate tests: a busybox-static root file system with the syscall probe, bundles
 * whose config.json comes from the project's own generator (kiln_spec_generate), and running
 * kiln-isolate or runc on them. Paths come from the environment meson sets (tests/isolate/meson.build). */
#pragma once

#include <json-glib/json-glib.h>

#include "spec/spec.h"

typedef struct TestEnv {
        char *tmp_dir;
        char *rootfs;
        char *isolate;         /* KILN_ISOLATE */
        char **wrapper;        /* KILN_ISOLATE_WRAPPER, split on spaces (e.g. valgrind ...), or NULL */
        char *runc;            /* NULL when runc is not installed */
        char *seccomp_profile; /* KILN_SECCOMP_PROFILE */
        char *state_root;      /* --root */
        char *cache_dir;       /* --cache-dir */
        unsigned int counter;
} TestEnv;

extern TestEnv test_env;

/* What a run asks for; zero is the kiln default (root, "/", no seccomp). */
typedef struct TestRun {
        const char *const *argv;
        const char *const *env;
        const char *cwd;
        guint32 uid, gid;
        const guint32 *gids;
        gsize n_gids;
        gboolean no_new_privileges;
        gboolean seccomp; /* the default profile, resolved for the run's capabilities */
        const char *const *cap_add;
        const char *const *cap_drop;
        const char *const *ulimits;
        const char *hostname;
        gboolean userns; /* container 0..65535 = host 100000.. */
        gboolean terminal;
        const KilnMount *mounts;
        gsize n_mounts;
        void (*edit)(JsonObject *spec); /* last changes to the document */
} TestRun;

/* Exits 77 unless root with a static busybox; sets everything up. */
void test_env_init(int *argc, char ***argv);
void test_env_cleanup(void);

/* A bundle for @run; *id gets a fresh container id. */
char *test_make_bundle(const TestRun *run, char **id);

/* `kiln-isolate run --bundle B -- ID`, stdout and stderr captured; returns the exit status (128+N for a
 * signal). @extra_fd, when >= 0, is passed to kiln-isolate as descriptor 7 (it must not reach the
 * command). The environment of kiln-isolate holds KILN_TEST_SECRET=leak. */
int test_run_isolate(const TestRun *run, int extra_fd, char **out, char **err);
/* The same bundle under runc (run --bundle). */
int test_run_runc(const TestRun *run, char **out, char **err);
/* kiln-isolate with @args (after the global --root), capturing its output. */
int test_isolate_cmd(const char *const *args, char **out, char **err);
/* The same with the given descriptors as its stdout and stderr (create hands its stdio to the
 * container, which outlives it: its output cannot be collected to the end). */
int test_isolate_cmd_fds(const char *const *args, int out_fd, int err_fd);
/* Any program, capturing its output. */
int test_spawn(const char *const *argv, int extra_fd, char **out, char **err);

/* The line of /proc/self/status-like @text starting with @key ("CapEff:"), its value trimmed. */
char *test_status_field(const char *text, const char *key);
/* The capability mask of @names ("CAP_CHOWN", ...). */
guint64 test_cap_mask(const char *const *names);
