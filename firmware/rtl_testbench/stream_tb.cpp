// Verilator testbench of a da4ml pipeline: streams one input vector per clock cycle
// (initiation interval 1) and records the output port after every rising edge, so the
// caller can both check the values and measure the pipeline latency in cycles.
// Inputs/outputs: raw int32 files, one value per port slot, in units of the slot's LSB.
// Compile-time: N_IN, N_OUT, BW_IN, BW_OUT (slot widths), SIGNED_OUT (0/1); top prefix Vdut.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <type_traits>
#include <vector>
#include "verilated.h"
#include "Vdut.h"

#if !defined(N_IN) || !defined(N_OUT) || !defined(BW_IN) || !defined(BW_OUT) || !defined(SIGNED_OUT)
#error "define N_IN, N_OUT, BW_IN, BW_OUT and SIGNED_OUT"
#endif

// A port is a plain integer up to 64 bits and a VlWide (32-bit words) above.
template <typename P> static void put_bits(P &port, int lo, int n, int64_t v) {
    for (int b = 0; b < n; ++b) {
        int pos = lo + b;
        bool one = (v >> b) & 1;
        if constexpr (std::is_integral_v<P>) {
            uint64_t m = (uint64_t)1 << pos;
            port = (P)(one ? ((uint64_t)port | m) : ((uint64_t)port & ~m));
        } else {
            uint32_t m = 1u << (pos % 32);
            port[pos / 32] = one ? (port[pos / 32] | m) : (port[pos / 32] & ~m);
        }
    }
}
template <typename P> static int64_t get_bits(const P &port, int lo, int n, bool sign) {
    int64_t v = 0;
    for (int b = 0; b < n; ++b) {
        int pos = lo + b;
        uint64_t bit;
        if constexpr (std::is_integral_v<P>) bit = ((uint64_t)port >> pos) & 1u;
        else bit = (port[pos / 32] >> (pos % 32)) & 1u;
        v |= (int64_t)bit << b;
    }
    if (sign && n > 0 && ((v >> (n - 1)) & 1)) v -= (int64_t)1 << n;
    return v;
}

int main(int argc, char **argv) {
    if (argc != 4) { std::fprintf(stderr, "usage: tb inputs.bin outputs.bin extra_cycles\n"); return 2; }
    FILE *fi = std::fopen(argv[1], "rb");
    if (!fi) { std::perror(argv[1]); return 2; }
    std::vector<int32_t> in;
    int32_t buf[4096];
    size_t got;
    while ((got = std::fread(buf, 4, 4096, fi)) > 0) in.insert(in.end(), buf, buf + got);
    std::fclose(fi);
    size_t n = in.size() / N_IN, cycles = n + std::atoi(argv[3]);
    Verilated::commandArgs(argc, argv);
    Vdut *dut = new Vdut;
    std::vector<int32_t> out(cycles * N_OUT);
    for (size_t t = 0; t < cycles; ++t) {
        for (int j = 0; j < N_IN; ++j)
            put_bits(dut->model_inp, j * BW_IN, BW_IN, t < n ? in[t * N_IN + j] : 0);
        dut->clk = 0; dut->eval();
        dut->clk = 1; dut->eval();
        for (int j = 0; j < N_OUT; ++j)
            out[t * N_OUT + j] = (int32_t)get_bits(dut->model_out, j * BW_OUT, BW_OUT, SIGNED_OUT);
    }
    dut->final();
    delete dut;
    FILE *fo = std::fopen(argv[2], "wb");
    if (!fo) { std::perror(argv[2]); return 2; }
    size_t written = std::fwrite(out.data(), 4, out.size(), fo);
    std::fclose(fo);
    return written == out.size() ? 0 : 1;
}
