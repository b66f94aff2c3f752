/* pool2d_common.c — model-text keys, printing and shape inference shared by maxpool2d and avgpool2d.
 *
 * Keys (all sizes are integers):
 *   size=K            square window; kh=, kw= set (or override) one side. size or both kh and kw required.
 *   stride=S          default: the window size per axis (PyTorch); stride_h=, stride_w= override.
 *   pad=P             all four sides; pad_top=, pad_bottom=, pad_left=, pad_right= override one side.
 *                     Symmetric pads follow PyTorch: pad <= keff / 2. Unequal pads on an axis (as ONNX
 *                     exports) must each be < keff.
 *   ceil=0|1          PyTorch ceil_mode.
 *   dilation=D        maxpool only (dilation_h=, dilation_w= override), default 1.
 *   count_include_pad=0|1   avgpool only, default 1 (PyTorch).
 * The output size is PyTorch's (see pool2d.h). Besides PyTorch's checks, every window must contain at least
 * one input element (a dilated window can otherwise fall entirely into padding, where max and the
 * padding-excluding average are undefined); maxpool planes must fit int32 argmax indices. */
#include "pool2d.h"

#include <stdint.h>

#define KEY_MAX ((size_t)INT32_MAX)

cnn_status cnn_pool2d_parse(struct cnn_kv *kv, cnn_pool2d_params *p, int kind) {
    cnn_status st;
    size_t size = 0, stride = 0, pad = 0, dilation = 1;
    int have_size = 0, have_kh = 0, have_kw = 0, have_stride = 0, have_sh = 0, have_sw = 0;

    p->ceil = 0;
    p->count_include_pad = 1;
    if ((st = cnn_kv_size(kv, "size", 1, KEY_MAX, &size, &have_size)) != CNN_OK)
        return st;
    p->kh = p->kw = size;
    if ((st = cnn_kv_size(kv, "kh", 1, KEY_MAX, &p->kh, &have_kh)) != CNN_OK)
        return st;
    if ((st = cnn_kv_size(kv, "kw", 1, KEY_MAX, &p->kw, &have_kw)) != CNN_OK)
        return st;
    if (!have_size && !(have_kh && have_kw)) {
        if (have_kh || have_kw)
            return cnn_kv_error(kv, have_kh ? "kh" : "kw", "window needs both kh and kw (or size)");
        return cnn_kv_error(kv, NULL, "missing window size: give size= (or kh= and kw=)");
    }

    if ((st = cnn_kv_size(kv, "stride", 1, KEY_MAX, &stride, &have_stride)) != CNN_OK)
        return st;
    p->stride_h = have_stride ? stride : p->kh;
    p->stride_w = have_stride ? stride : p->kw;
    if ((st = cnn_kv_size(kv, "stride_h", 1, KEY_MAX, &p->stride_h, &have_sh)) != CNN_OK)
        return st;
    if ((st = cnn_kv_size(kv, "stride_w", 1, KEY_MAX, &p->stride_w, &have_sw)) != CNN_OK)
        return st;

    if ((st = cnn_kv_size(kv, "pad", 0, KEY_MAX, &pad, NULL)) != CNN_OK)
        return st;
    p->pad_top = p->pad_bottom = p->pad_left = p->pad_right = pad;
    if ((st = cnn_kv_size(kv, "pad_top", 0, KEY_MAX, &p->pad_top, NULL)) != CNN_OK ||
        (st = cnn_kv_size(kv, "pad_bottom", 0, KEY_MAX, &p->pad_bottom, NULL)) != CNN_OK ||
        (st = cnn_kv_size(kv, "pad_left", 0, KEY_MAX, &p->pad_left, NULL)) != CNN_OK ||
        (st = cnn_kv_size(kv, "pad_right", 0, KEY_MAX, &p->pad_right, NULL)) != CNN_OK)
        return st;

    if ((st = cnn_kv_bool(kv, "ceil", &p->ceil, NULL)) != CNN_OK)
        return st;

    p->dilation_h = p->dilation_w = 1;
    if (kind == CNN_POOL2D_MAX) {
        if ((st = cnn_kv_size(kv, "dilation", 1, KEY_MAX, &dilation, NULL)) != CNN_OK)
            return st;
        p->dilation_h = p->dilation_w = dilation;
        if ((st = cnn_kv_size(kv, "dilation_h", 1, KEY_MAX, &p->dilation_h, NULL)) != CNN_OK ||
            (st = cnn_kv_size(kv, "dilation_w", 1, KEY_MAX, &p->dilation_w, NULL)) != CNN_OK)
            return st;
    } else {
        if ((st = cnn_kv_bool(kv, "count_include_pad", &p->count_include_pad, NULL)) != CNN_OK)
            return st;
    }
    p->ceil = p->ceil != 0;
    p->count_include_pad = p->count_include_pad != 0;
    return CNN_OK;
}

void cnn_pool2d_print(const cnn_pool2d_params *p, int kind, cnn_strbuf *out) {
    if (p->kh == p->kw)
        cnn_strbuf_printf(out, " size=%zu", p->kh);
    else
        cnn_strbuf_printf(out, " kh=%zu kw=%zu", p->kh, p->kw);
    if (p->stride_h == p->kh && p->stride_w == p->kw)
        ; /* the default */
    else if (p->stride_h == p->stride_w)
        cnn_strbuf_printf(out, " stride=%zu", p->stride_h);
    else
        cnn_strbuf_printf(out, " stride_h=%zu stride_w=%zu", p->stride_h, p->stride_w);
    if (p->pad_top == p->pad_bottom && p->pad_top == p->pad_left && p->pad_top == p->pad_right) {
        if (p->pad_top != 0)
            cnn_strbuf_printf(out, " pad=%zu", p->pad_top);
    } else {
        cnn_strbuf_printf(out, " pad_top=%zu pad_bottom=%zu pad_left=%zu pad_right=%zu", p->pad_top,
                          p->pad_bottom, p->pad_left, p->pad_right);
    }
    if (p->ceil)
        cnn_strbuf_printf(out, " ceil=1");
    if (kind == CNN_POOL2D_MAX) {
        if (p->dilation_h == p->dilation_w) {
            if (p->dilation_h != 1)
                cnn_strbuf_printf(out, " dilation=%zu", p->dilation_h);
        } else {
            cnn_strbuf_printf(out, " dilation_h=%zu dilation_w=%zu", p->dilation_h, p->dilation_w);
        }
    } else if (!p->count_include_pad) {
        cnn_strbuf_printf(out, " count_include_pad=0");
    }
}

/* Output length along one axis; `axis` is "height" or "width" for messages. */
static cnn_status axis_out(const cnn_layer *L, const char *axis, size_t len, size_t k, size_t stride,
                           size_t pad0, size_t pad1, size_t dilation, int ceil, size_t *out) {
    size_t keff, padded, t;
    if (len == 0)
        return cnn_layer_error(L, CNN_ERR_SHAPE, "input %s is 0", axis);
    if (!cnn_size_mul(k - 1, dilation, &keff) || !cnn_size_add(keff, 1, &keff) || keff > KEY_MAX)
        return cnn_layer_error(L, CNN_ERR_SHAPE, "dilated window %zu x dilation %zu is too large", k,
                               dilation);
    if (pad0 == pad1) {
        if (pad0 > keff / 2)
            return cnn_layer_error(L, CNN_ERR_SHAPE,
                                   "pad %zu on the %s axis is more than half the window (%zu); PyTorch "
                                   "requires pad <= window/2",
                                   pad0, axis, keff);
    } else if (pad0 >= keff || pad1 >= keff) {
        return cnn_layer_error(L, CNN_ERR_SHAPE,
                               "asymmetric pads %zu,%zu on the %s axis must each be smaller than the window "
                               "(%zu)",
                               pad0, pad1, axis, keff);
    }
    if (!cnn_size_add(len, pad0, &padded) || !cnn_size_add(padded, pad1, &padded))
        return cnn_layer_error(L, CNN_ERR_SHAPE, "padded %s overflows", axis);
    /* floor mode: (padded - keff) / stride + 1; ceil mode: (padded - keff + stride - 1) / stride + 1 */
    if (!cnn_size_add(padded, ceil ? stride - 1 : 0, &t))
        return cnn_layer_error(L, CNN_ERR_SHAPE, "padded %s overflows", axis);
    if (t < keff)
        return cnn_layer_error(L, CNN_ERR_SHAPE,
                               "window %zu is larger than the padded input %s %zu (%zu + pad %zu + %zu)%s",
                               keff, axis, padded, len, pad0, pad1, ceil ? " even in ceil mode" : "");
    size_t o = (t - keff) / stride + 1;
    if (ceil && (o - 1) * stride >= len + pad0)
        o--;
    /* every window must hold at least one input element */
    for (size_t i = 0; i < o; i++) {
        size_t lo, hi;
        cnn_pool2d_taps((ptrdiff_t)(i * stride) - (ptrdiff_t)pad0, k, dilation, len, &lo, &hi);
        if (lo >= hi)
            return cnn_layer_error(L, CNN_ERR_SHAPE,
                                   "output %s position %zu: its window (dilation %zu) covers only padding",
                                   axis, i, dilation);
    }
    *out = o;
    return CNN_OK;
}

cnn_status cnn_pool2d_shape(cnn_layer *L, cnn_pool2d_params *p, int kind) {
    cnn_status st;
    cnn_shape in = L->in[0];
    size_t plane;
    if (kind != CNN_POOL2D_MAX)
        p->dilation_h = p->dilation_w = 1;
    if ((st = axis_out(L, "height", in.h, p->kh, p->stride_h, p->pad_top, p->pad_bottom, p->dilation_h,
                       p->ceil, &p->oh)) != CNN_OK)
        return st;
    if ((st = axis_out(L, "width", in.w, p->kw, p->stride_w, p->pad_left, p->pad_right, p->dilation_w,
                       p->ceil, &p->ow)) != CNN_OK)
        return st;
    if (in.c == 0)
        return cnn_layer_error(L, CNN_ERR_SHAPE, "input has 0 channels");
    if (!cnn_size_mul(in.h, in.w, &plane))
        return cnn_layer_error(L, CNN_ERR_SHAPE, "input plane %zu x %zu overflows", in.h, in.w);
    if (kind == CNN_POOL2D_MAX && plane > (size_t)INT32_MAX)
        return cnn_layer_error(L, CNN_ERR_UNSUPPORTED,
                               "input plane %zu x %zu is too large for int32 argmax indices", in.h, in.w);
    size_t flops;
    if (!cnn_size_mul3(in.c, p->oh, p->ow, &p->out_count) ||
        !cnn_size_mul3(p->out_count, p->kh, p->kw, &flops) ||
        (kind == CNN_POOL2D_MAX && p->out_count > SIZE_MAX / sizeof(int32_t)))
        return cnn_layer_error(L, CNN_ERR_SHAPE, "output %zu x %zu x %zu (window %zu x %zu) overflows", in.c,
                               p->oh, p->ow, p->kh, p->kw);
    p->flops = (uint64_t)flops;
    /* interior columns: ow * stride_w >= pad_left and ow * stride_w - pad_left + keff_w <= w */
    size_t keff_w = p->dilation_w * (p->kw - 1) + 1; /* checked in axis_out */
    p->ow_a = (p->pad_left + p->stride_w - 1) / p->stride_w;
    p->ow_b = in.w + p->pad_left >= keff_w ? (in.w + p->pad_left - keff_w) / p->stride_w + 1 : 0;
    if (p->ow_b > p->ow)
        p->ow_b = p->ow;
    if (p->ow_a > p->ow)
        p->ow_a = p->ow;
    if (p->ow_b < p->ow_a)
        p->ow_b = p->ow_a;
    L->out.c = in.c;
    L->out.h = p->oh;
    L->out.w = p->ow;
    return CNN_OK;
}
