/* SPDX-License-Identifier: Apache-2.0 */
/* hooks.d directories: the only I/O of hooks (run-hooks.h). The directories and their files are the
 * administrator's, as is what they name: kilnd reads them as root, at each run, so that a hook added
 * or removed applies to the next run without a restart (podman watches its directories for the same
 * reason). Still bounded: a file of at most KILN_HOOK_FILE_MAX_BYTES, at most KILN_HOOKS_MAX_FILES of
 * them, regular files only. */
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "run/run-hooks.h"
#include "base/kiln-common.h"

typedef struct {
        char *name; /* the file name, which a later directory's file of the same name replaces */
        char *key;  /* its lower-case form, the order of injection */
        char *path;
} Entry;

static void entry_free(Entry *e)
{
        g_free(e->name);
        g_free(e->key);
        g_free(e->path);
        g_free(e);
}

static int entry_compare(gconstpointer a, gconstpointer b)
{
        const Entry *x = *(Entry *const *)a, *y = *(Entry *const *)b;
        int r = strcmp(x->key, y->key);

        return r ? r : strcmp(x->name, y->name);
}

/* Adds the *.json names of @dir to @entries (by name: a later directory replaces). */
static void list_directory(const char *dir, GHashTable *entries)
{
        g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
        const char *name;

        if (!d)
                return; /* containers-common's directories need not exist */
        while ((name = g_dir_read_name(d))) {
                Entry *e;
                if (!g_str_has_suffix(name, ".json"))
                        continue;
                if (!g_hash_table_contains(entries, name) &&
                    g_hash_table_size(entries) >= KILN_HOOKS_MAX_FILES) {
                        g_warning("Hooks: more than %d files; %s/%s left out", KILN_HOOKS_MAX_FILES, dir,
                                  name);
                        continue;
                }
                e = g_new0(Entry, 1);
                e->name = g_strdup(name);
                e->key = g_utf8_strdown(name, -1);
                e->path = g_build_filename(dir, name, NULL);
                g_hash_table_replace(entries, e->name, e);
        }
}

static ssize_t read_all(int fd, char *buf, size_t size)
{
        size_t done = 0;

        while (done < size) {
                ssize_t n = read(fd, buf + done, size - done);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -1;
                if (n == 0)
                        break;
                done += (size_t)n;
        }
        return (ssize_t)done;
}

/* The file's bytes, or NULL (logged). Symbolic links are followed: packages install hooks.d entries
 * as links, and the directory is the administrator's. */
static char *read_file(const char *path, gsize *length)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        g_autofree char *data = NULL;
        struct stat st;
        ssize_t n;

        if (fd < 0 || fstat(fd, &st) < 0) {
                g_warning("Hooks: skipping %s: %s", path, g_strerror(errno));
                return NULL;
        }
        if (!S_ISREG(st.st_mode)) {
                g_warning("Hooks: skipping %s: not a regular file", path);
                return NULL;
        }
        if (st.st_size > KILN_HOOK_FILE_MAX_BYTES) {
                g_warning("Hooks: skipping %s: more than %d bytes", path, KILN_HOOK_FILE_MAX_BYTES);
                return NULL;
        }
        /* One byte more than allowed: a file that grew since fstat is still caught. */
        data = g_malloc(KILN_HOOK_FILE_MAX_BYTES + 1);
        n = read_all(fd, data, KILN_HOOK_FILE_MAX_BYTES + 1);
        if (n < 0 || n > KILN_HOOK_FILE_MAX_BYTES) {
                g_warning("Hooks: skipping %s: %s", path, n < 0 ? g_strerror(errno) : "too large");
                return NULL;
        }
        *length = (gsize)n;
        return g_steal_pointer(&data);
}

GPtrArray *kiln_hooks_load(const char *const *dirs)
{
        g_autoptr(GHashTable) entries =
                g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify)entry_free);
        g_autoptr(GPtrArray) sorted = g_ptr_array_new();
        GPtrArray *files = g_ptr_array_new_with_free_func((GDestroyNotify)kiln_hook_file_free);
        GHashTableIter iter;
        gpointer value;

        for (const char *const *d = dirs; d && *d; d++)
                list_directory(*d, entries);
        g_hash_table_iter_init(&iter, entries);
        while (g_hash_table_iter_next(&iter, NULL, &value))
                g_ptr_array_add(sorted, value);
        g_ptr_array_sort(sorted, entry_compare);
        for (guint i = 0; i < sorted->len; i++) {
                const Entry *e = sorted->pdata[i];
                g_autoptr(GError) error = NULL;
                g_autofree char *data = NULL;
                KilnHookFile *f;
                gsize length = 0;

                data = read_file(e->path, &length);
                if (!data)
                        continue;
                f = kiln_hook_file_parse(data, length, &error);
                if (!f) {
                        g_warning("Hooks: skipping %s: %s", e->path, error->message);
                        continue;
                }
                g_ptr_array_add(files, f);
        }
        return files;
}

void kiln_hooks_select(GPtrArray *files, const KilnHookTarget *target, GArray *hooks)
{
        for (guint i = 0; files && i < files->len; i++)
                if (kiln_hook_file_matches(files->pdata[i], target))
                        kiln_hook_file_add(files->pdata[i], hooks);
}
