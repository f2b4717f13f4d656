/* libFuzzer: protocol message decoder (every type), then every accessor a
 * handler would use on what it accepted. */
#include <stdint.h>
#include <stdlib.h>

#include "src/msg.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (tc_init() != TALLY_OK)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct msg m;
    struct tally_err err = {0};
    if (msg_decode(data, size, 1u << 20, &m, &err) != TALLY_OK)
        return 0;
    if (m.type == MSG_REPLY) {
        struct msg_reply_entry e;
        for (uint32_t i = 0; i < m.u.reply.count; i++)
            msg_reply_entry_get(&m, i, &e);
    }
    /* The iterators over VIEW-CHANGE and NEW-VIEW must stay inside what the
     * decoder checked, and every one must run to its count. */
    struct msg_iter it;
    if (m.type == MSG_VIEW_CHANGE) {
        struct msg_vc_entry e;
        uint32_t n = 0;
        msg_vc_iter(&m, &it);
        while (msg_vc_next(&it, &e))
            n++;
        if (n != m.u.view_change.nentries)
            abort();
    }
    if (m.type == MSG_NEW_VIEW) {
        const uint8_t *bytes;
        size_t len;
        uint32_t n = 0;
        msg_nv_vc_iter(&m, &it);
        while (msg_nv_vc_next(&it, &bytes, &len)) {
            struct msg inner;
            if (msg_decode(bytes, len, len, &inner, &err) != TALLY_OK ||
                inner.type != MSG_VIEW_CHANGE)
                abort(); /* the decoder promised it */
            n++;
        }
        struct msg_nv_prop prop;
        msg_nv_prop_iter(&m, &it);
        while (msg_nv_prop_next(&it, &prop))
            n++;
        if (n != m.u.new_view.nvc + m.u.new_view.nprops)
            abort();
    }
    const struct msg_batch *batch = NULL;
    if (m.type == MSG_REQUEST)
        batch = &m.u.request;
    if (m.type == MSG_PRE_PREPARE)
        batch = &m.u.pre_prepare.batch;
    if (batch != NULL) {
        for (uint32_t i = 0; i < batch->count; i++) {
            struct ledger_tx tx;
            (void)ledger_tx_decode(batch->tx_bytes + (size_t)i * LEDGER_TX_BYTES, LEDGER_TX_BYTES,
                                   &tx);
        }
        tc_hash d;
        msg_batch_digest(batch, &d);
    }
    return 0;
}
