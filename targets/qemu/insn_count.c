/*
 * Counts the guest instructions a program executes under qemu-user (TCG plugin), in all
 * and up to each write to standard output, so that a program that streams its output
 * (one write per decoded token) shows the cost of each step between writes.
 *
 *   gcc -O2 -shared -fPIC -o insn_count.so insn_count.c
 *   qemu-aarch64 -plugin ./insn_count.so,out=count.txt ./program
 *
 * count.txt: "write N" for each write to fd 1 (N: instructions executed so far), then
 * "total N". Per translation block, an inline add of its instruction count: cheap and
 * exact for a single-threaded guest. Declares the few plugin API entry points it uses
 * (QEMU's plugin API, version 1, as in QEMU 7.2).
 *
 * With profile=FILE it also counts executions per translation block and writes
 * "ADDRESS INSTRUCTIONS" per block start to FILE (guest virtual addresses; run qemu with
 * -d page to learn where the program was loaded): targets/qemu/profile.sh turns that into
 * instructions per symbol.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*syscall_cb)(qemu_plugin_id_t id, unsigned int vcpu, int64_t num, uint64_t a1,
                           uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6,
                           uint64_t a7, uint64_t a8);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id,
                                           void (*cb)(qemu_plugin_id_t, struct qemu_plugin_tb *));
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op,
                                              void *ptr, uint64_t imm);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
void qemu_plugin_register_vcpu_syscall_cb(qemu_plugin_id_t id, syscall_cb cb);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, void (*cb)(qemu_plugin_id_t, void *),
                                    void *userdata);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

#define MAX_MARKS 4096
static uint64_t executed;
static uint64_t marks[MAX_MARKS];
static size_t n_marks;
static int64_t write_nr = 64; /* aarch64; arm=... sets 4 */
static char out_path[4096];
static char profile_path[4096];

/* one per translation (a block translated twice gets two, summed when written) */
struct block {
    uint64_t vaddr;
    uint64_t insns;
    uint64_t runs;
    struct block *next;
};
static struct block *blocks;

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &executed,
                                             qemu_plugin_tb_n_insns(tb));
    if (!profile_path[0])
        return;
    struct block *b = calloc(1, sizeof *b);
    if (!b)
        return;
    b->vaddr = qemu_plugin_tb_vaddr(tb);
    b->insns = qemu_plugin_tb_n_insns(tb);
    b->next = blocks;
    blocks = b;
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &b->runs, 1);
}

static void on_syscall(qemu_plugin_id_t id, unsigned int vcpu, int64_t num, uint64_t a1,
                       uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6,
                       uint64_t a7, uint64_t a8)
{
    (void)id, (void)vcpu, (void)a2, (void)a3, (void)a4, (void)a5, (void)a6, (void)a7, (void)a8;
    if (num == write_nr && a1 == 1 && n_marks < MAX_MARKS)
        marks[n_marks++] = executed;
}

static void report(qemu_plugin_id_t id, void *userdata)
{
    (void)id;
    (void)userdata;
    FILE *f = out_path[0] ? fopen(out_path, "w") : stderr;
    if (!f)
        return;
    for (size_t i = 0; i < n_marks; i++)
        fprintf(f, "write %llu\n", (unsigned long long)marks[i]);
    fprintf(f, "total %llu\n", (unsigned long long)executed);
    if (f != stderr)
        fclose(f);
    if (!profile_path[0])
        return;
    FILE *p = fopen(profile_path, "w");
    if (!p)
        return;
    for (struct block *b = blocks; b; b = b->next)
        if (b->runs)
            fprintf(p, "%llx %llu\n", (unsigned long long)b->vaddr,
                    (unsigned long long)(b->insns * b->runs));
    fclose(p);
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id,
                                                               const void *info, int argc,
                                                               char **argv)
{
    (void)info;
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "out=", 4) == 0)
            snprintf(out_path, sizeof out_path, "%s", argv[i] + 4);
        if (strncmp(argv[i], "profile=", 8) == 0)
            snprintf(profile_path, sizeof profile_path, "%s", argv[i] + 8);
        if (strcmp(argv[i], "arch=arm") == 0)
            write_nr = 4;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
    qemu_plugin_register_atexit_cb(id, report, NULL);
    return 0;
}
