/* SPDX-License-Identifier: Apache-2.0 */
/* The CDI spec parser (run/cdi.c): what a spec gives, what it may not say, and how a qualified name is
 * found among specs of several directories. */
#include <string.h>

#include "base/errors.h"
#include "run/cdi.h"

static const char *const full_spec =
        "{\"cdiVersion\": \"0.6.0\", \"kind\": \"vendor.com/gpu\","
        " \"devices\": [{\"name\": \"gpu0\", \"annotations\": {\"a\": \"b\"}, \"containerEdits\": {"
        "   \"deviceNodes\": [{\"path\": \"/dev/gpu0\", \"hostPath\": \"/dev/nvidia0\", \"type\": \"c\","
        "                      \"major\": 195, \"minor\": 0, \"fileMode\": 8630, \"permissions\": \"rw\","
        "                      \"uid\": 1, \"gid\": 2}, {\"path\": \"/dev/ctl\"}],"
        "   \"mounts\": [{\"hostPath\": \"/usr/lib/libgpu.so\", \"containerPath\": \"/usr/lib/libgpu.so\","
        "                 \"options\": [\"ro\", \"nosuid\", \"bind\"]}],"
        "   \"env\": [\"GPU=0\"],"
        "   \"hooks\": [{\"hookName\": \"createContainer\", \"path\": \"/usr/bin/hook\","
        "                \"args\": [\"hook\", \"-x\"], \"env\": [\"X=1\"], \"timeout\": 5}]}},"
        "  {\"name\": \"all\", \"containerEdits\": {}}],"
        " \"containerEdits\": {\"env\": [\"VENDOR=1\"]}}";

static KilnCdiSpec *parse(const char *text, GError **error)
{
        return kiln_cdi_spec_parse(text, strlen(text), "/etc/cdi/test.json", error);
}

static void test_full(void)
{
        g_autoptr(GError) error = NULL;
        g_autoptr(KilnCdiSpec) spec = parse(full_spec, &error);
        const KilnCdiDevice *gpu;
        const KilnCdiDeviceNode *node, *ctl;
        const KilnCdiMount *mount;
        const KilnCdiHook *hook;

        g_assert_no_error(error);
        g_assert_cmpstr(spec->kind, ==, "vendor.com/gpu");
        g_assert_cmpuint(spec->devices->len, ==, 2);
        gpu = spec->devices->pdata[0];
        g_assert_cmpstr(gpu->name, ==, "gpu0");
        node = gpu->edits.device_nodes->pdata[0];
        g_assert_cmpstr(node->path, ==, "/dev/gpu0");
        g_assert_cmpstr(node->host_path, ==, "/dev/nvidia0");
        g_assert_cmpint(node->type, ==, 'c');
        g_assert_cmpint(node->major, ==, 195);
        g_assert_cmpint(node->minor, ==, 0);
        g_assert_cmpint(node->file_mode, ==, 8630 & 07777); /* only the permission bits */
        g_assert_cmpstr(node->permissions, ==, "rw");
        g_assert_cmpint(node->uid, ==, 1);
        g_assert_cmpint(node->gid, ==, 2);
        /* What is not given stays unset: the host node decides. */
        ctl = gpu->edits.device_nodes->pdata[1];
        g_assert_null(ctl->host_path);
        g_assert_cmpint(ctl->type, ==, 0);
        g_assert_cmpint(ctl->major, ==, -1);
        g_assert_cmpint(ctl->file_mode, ==, -1);
        g_assert_cmpint(ctl->uid, ==, -1);
        g_assert_null(ctl->permissions);
        mount = gpu->edits.mounts->pdata[0];
        g_assert_cmpstr(mount->container_path, ==, "/usr/lib/libgpu.so");
        g_assert_cmpuint(g_strv_length(mount->options), ==, 3);
        g_assert_cmpstr(gpu->edits.env[0], ==, "GPU=0");
        hook = gpu->edits.hooks->pdata[0];
        g_assert_cmpstr(hook->stage, ==, "createContainer");
        g_assert_cmpstr(hook->args[1], ==, "-x");
        g_assert_cmpstr(hook->env[0], ==, "X=1");
        g_assert_cmpint(hook->timeout, ==, 5);
        g_assert_cmpstr(spec->edits.env[0], ==, "VENDOR=1");
        /* A device whose edits are empty has empty lists, never NULL ones. */
        gpu = spec->devices->pdata[1];
        g_assert_nonnull(gpu->edits.env);
        g_assert_cmpuint(gpu->edits.device_nodes->len, ==, 0);
}

static void test_refused(void)
{
        static const struct {
                const char *text, *fragment;
        } cases[] = {
                {"", "test.json"},
                {"[]", "not a JSON object"},
                {"{\"kind\": \"a.com/b\", \"devices\": [{\"name\": \"x\", \"containerEdits\": {}}]}",
                 "cdiVersion"},
                {"{\"cdiVersion\": \"1.0.0\", \"kind\": \"a.com/b\", \"devices\": [{\"name\": \"x\", "
                 "\"containerEdits\": {}}]}",
                 "cdiVersion"},
                {"{\"cdiVersion\": \"0.6.0\", \"kind\": \"nokind\", \"devices\": [{\"name\": \"x\", "
                 "\"containerEdits\": {}}]}",
                 "kind"},
                {"{\"cdiVersion\": \"0.6.0\", \"kind\": \"a.com/b\", \"devices\": []}", "no devices"},
                {"{\"cdiVersion\": \"0.6.0\", \"kind\": \"a.com/b\", \"devices\": [{\"name\": \"-x\", "
                 "\"containerEdits\": {}}]}",
                 "name"},
                {"{\"cdiVersion\": \"0.6.0\", \"kind\": \"a.com/b\", \"devices\": [{\"name\": \"x\"}]}",
                 "containerEdits"},
                {"{\"cdiVersion\": \"0.6.0\", \"kind\": \"a.com/b\", \"devices\": [{\"name\": \"x\", "
                 "\"containerEdits\": {}},"
                 " {\"name\": \"x\", \"containerEdits\": {}}]}",
                 "twice"},
                /* Edits kiln cannot apply refuse the spec rather than half-apply it. */
                {"{\"cdiVersion\": \"0.6.0\", \"kind\": \"a.com/b\", \"devices\": [{\"name\": \"x\", "
                 "\"containerEdits\": "
                 "{\"additionalGids\": [5]}}]}",
                 "additionalGids"},
                {"{\"cdiVersion\": \"0.6.0\", \"kind\": \"a.com/b\", \"devices\": [{\"name\": \"x\", "
                 "\"containerEdits\": "
                 "{\"deviceNodes\": [{\"path\": \"dev/x\"}]}}]}",
                 "deviceNodes[0].path"},
                {"{\"cdiVersion\": \"0.6.0\", \"kind\": \"a.com/b\", \"devices\": [{\"name\": \"x\", "
                 "\"containerEdits\": "
                 "{\"deviceNodes\": [{\"path\": \"/dev/x\", \"type\": \"p\"}]}}]}",
                 "type"},
                {"{\"cdiVersion\": \"0.6.0\", \"kind\": \"a.com/b\", \"devices\": [{\"name\": \"x\", "
                 "\"containerEdits\": "
                 "{\"deviceNodes\": [{\"path\": \"/dev/x\", \"major\": -1}]}}]}",
                 "major"},
                {"{\"cdiVersion\": \"0.6.0\", \"kind\": \"a.com/b\", \"devices\": [{\"name\": \"x\", "
                 "\"containerEdits\": "
                 "{\"deviceNodes\": [{\"path\": \"/dev/x\", \"permissions\": \"rwx\"}]}}]}",
                 "permissions"},
                {"{\"cdiVersion\": \"0.6.0\", \"kind\": \"a.com/b\", \"devices\": [{\"name\": \"x\", "
                 "\"containerEdits\": "
                 "{\"mounts\": [{\"hostPath\": \"/a\", \"containerPath\": \"/b\", \"type\": \"tmpfs\"}]}}]}",
                 "bind"},
                {"{\"cdiVersion\": \"0.6.0\", \"kind\": \"a.com/b\", \"devices\": [{\"name\": \"x\", "
                 "\"containerEdits\": "
                 "{\"env\": [\"NOEQUALS\"]}}]}",
                 "env[0]"},
                {"{\"cdiVersion\": \"0.6.0\", \"kind\": \"a.com/b\", \"devices\": [{\"name\": \"x\", "
                 "\"containerEdits\": "
                 "{\"hooks\": [{\"hookName\": \"whenever\", \"path\": \"/h\"}]}}]}",
                 "OCI hook stage"},
        };

        for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
                g_autoptr(GError) error = NULL;
                g_autoptr(KilnCdiSpec) spec = parse(cases[i].text, &error);

                g_assert_null(spec);
                g_assert_error(error, KILN_ERROR, KILN_ERROR_CODE_INVALID_ARGUMENT);
                g_assert_nonnull(strstr(error->message, "/etc/cdi/test.json"));
                if (!strstr(error->message, cases[i].fragment))
                        g_error("case %" G_GSIZE_FORMAT ": '%s' lacks '%s'", i, error->message,
                                cases[i].fragment);
        }
}

static void test_names(void)
{
        static const char *const good[] = {"vendor.com/class=name", "a/b=c", "nvidia.com/gpu=0",
                                           "x.y/z-w=a:b.c_d"};
        static const char *const bad[] = {"vendor.com/class=",   "vendor.com/=n",   "/class=n",
                                          "vendor.com/cl ass=n", "1vendor/class=n", "vendor.com/class=-n"};

        for (gsize i = 0; i < G_N_ELEMENTS(good); i++) {
                g_autofree char *kind = NULL, *name = NULL;
                g_assert_true(kiln_cdi_is_name(good[i]));
                g_assert_true(kiln_cdi_parse_name("devices[0]", good[i], &kind, &name, NULL));
        }
        for (gsize i = 0; i < G_N_ELEMENTS(bad); i++) {
                g_autoptr(GError) error = NULL;
                g_autofree char *kind = NULL, *name = NULL;
                g_assert_false(kiln_cdi_parse_name("devices[3]", bad[i], &kind, &name, &error));
                g_assert_nonnull(strstr(error->message, "devices[3]"));
        }
        /* Paths are never CDI names. */
        g_assert_false(kiln_cdi_is_name("/dev/null"));
        g_assert_false(kiln_cdi_is_name("/dev/a=b/c"));
}

static KilnCdiSpec *spec_of(const char *device, guint priority, const char *origin)
{
        g_autofree char *text =
                g_strdup_printf("{\"cdiVersion\": \"0.5.0\", \"kind\": \"v.com/c\", \"devices\": "
                                "[{\"name\": \"%s\", \"containerEdits\": {\"env\": [\"FROM=%s\"]}}]}",
                                device, origin);
        KilnCdiSpec *spec = kiln_cdi_spec_parse(text, strlen(text), origin, NULL);

        g_assert_nonnull(spec);
        spec->priority = priority;
        return spec;
}

static void test_find(void)
{
        g_autoptr(GPtrArray) specs = g_ptr_array_new_with_free_func((GDestroyNotify)kiln_cdi_spec_free);
        const KilnCdiSpec *spec = NULL;
        const KilnCdiDevice *d;
        g_autoptr(GError) error = NULL;

        g_ptr_array_add(specs, spec_of("a", 1, "/var/run/cdi/x.json"));
        g_ptr_array_add(specs, spec_of("a", 0, "/etc/cdi/x.json"));
        g_ptr_array_add(specs, spec_of("b", 0, "/etc/cdi/y.json"));
        g_ptr_array_add(specs, spec_of("b", 0, "/etc/cdi/z.json"));
        /* The later directory wins, whatever order the specs are in. */
        d = kiln_cdi_find(specs, "devices[0]", "v.com/c=a", &spec, &error);
        g_assert_no_error(error);
        g_assert_cmpstr(spec->origin, ==, "/var/run/cdi/x.json");
        g_assert_cmpstr(d->edits.env[0], ==, "FROM=/var/run/cdi/x.json");
        /* Two of one directory conflict; unknown names and kinds are unknown; each names the argument. */
        g_assert_null(kiln_cdi_find(specs, "devices[1]", "v.com/c=b", &spec, &error));
        g_assert_error(error, KILN_ERROR, KILN_ERROR_CODE_INVALID_ARGUMENT);
        g_assert_nonnull(strstr(error->message, "devices[1]"));
        g_assert_nonnull(strstr(error->message, "z.json"));
        g_clear_error(&error);
        g_assert_null(kiln_cdi_find(specs, "devices[2]", "v.com/c=nope", &spec, &error));
        g_assert_nonnull(strstr(error->message, "devices[2]"));
        g_clear_error(&error);
        g_assert_null(kiln_cdi_find(specs, "devices[3]", "other.com/c=a", &spec, &error));
        g_assert_nonnull(strstr(error->message, "devices[3]"));
}

int main(int argc, char **argv)
{
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/cdi/full", test_full);
        g_test_add_func("/cdi/refused", test_refused);
        g_test_add_func("/cdi/names", test_names);
        g_test_add_func("/cdi/find", test_find);
        return g_test_run();
}
