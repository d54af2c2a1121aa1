/* SPDX-License-Identifier: Apache-2.0 */
/* The command: looked up before the init reports ready (so that `create` fails, as runc's does, for a
 * command that is not there), then exec'd. Runs after the pivot, as the process user. */
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "isolate.h"
#include "base/rootfs.h"

static const char *spec_path(const IsoSpec *spec)
{
        for (char **e = spec->env; *e; e++)
                if (g_str_has_prefix(*e, "PATH="))
                        return *e + 5;
        return KILN_DEFAULT_PATH;
}

/* 0: an executable regular file; else the errno execve would fail with. */
static int check_candidate(const char *path)
{
        struct stat st;

        if (stat(path, &st) < 0)
                return errno;
        if (!S_ISREG(st.st_mode))
                return EACCES;
        if (faccessat(AT_FDCWD, path, X_OK, AT_EACCESS) < 0)
                return errno;
        return 0;
}

char *iso_exec_lookup(const IsoSpec *spec, GError **error)
{
        const char *cmd = spec->args[0];
        g_auto(GStrv) dirs = NULL;
        bool denied = false;
        int e;

        /* The messages say it as runc does, which is what kilnd's driver recognises as 127 / 126. */
        if (strchr(cmd, '/')) {
                e = check_candidate(cmd);
                if (e == 0)
                        return g_strdup(cmd);
                iso_fail_code(error, e == ENOENT || e == ENOTDIR ? ISO_EXIT_NOT_FOUND : ISO_EXIT_NOT_EXEC,
                              "exec: \"%s\": %s", cmd, g_strerror(e));
                return NULL;
        }
        dirs = g_strsplit(spec_path(spec), ":", -1);
        for (char **d = dirs; *d; d++) {
                g_autofree char *candidate = g_build_filename(**d ? *d : ".", cmd, NULL);

                e = check_candidate(candidate);
                if (e == 0)
                        return g_steal_pointer(&candidate);
                denied |= e == EACCES;
        }
        if (denied)
                iso_fail_code(error, ISO_EXIT_NOT_EXEC, "exec: \"%s\": permission denied", cmd);
        else
                iso_fail_code(error, ISO_EXIT_NOT_FOUND, "exec: \"%s\": executable file not found in $PATH",
                              cmd);
        return NULL;
}

int iso_exec(const char *path, const IsoSpec *spec, GError **error)
{
        int e;

        execve(path, spec->args, spec->env);
        e = errno;
        iso_fail_code(error, e == ENOENT || e == ENOTDIR ? ISO_EXIT_NOT_FOUND : ISO_EXIT_NOT_EXEC,
                      "exec '%s': %s", path, g_strerror(e));
        return e == ENOENT || e == ENOTDIR ? ISO_EXIT_NOT_FOUND : ISO_EXIT_NOT_EXEC;
}
