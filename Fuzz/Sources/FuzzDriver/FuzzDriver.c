#include "FuzzDriver.h"

/* In libFuzzer since LLVM 11; linked in by -sanitize=fuzzer. */
int LLVMFuzzerRunDriver(int *argc, char ***argv, fuzz_test_one_input test_one_input);

int fuzz_main(int argc, char **argv, fuzz_test_one_input test_one_input) {
    return LLVMFuzzerRunDriver(&argc, &argv, test_one_input);
}
