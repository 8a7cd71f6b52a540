#include "cli.h"

int main(int argc, char** argv) { return imgbake::cli::run(argc, argv); }
