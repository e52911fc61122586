// gilscope: run a Python script and show what its GIL did.
#include "cli/app.h"

int main(int argc, char** argv) { return gilscope::cli::Main(argc, argv); }
