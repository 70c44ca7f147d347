// Fashion-MNIST (Xiao, Rasul, Vollgraf 2017): 28x28 grey images of 10 kinds
// of clothing, 60000 train / 10000 test, read from the four gzip'd idx files.
//
// Data source "fashion_mnist", settings (the scenario's `data:` map):
//   path           directory holding the .gz files
//                  (default /usr/share/datasets/fashion-mnist, Debian package
//                  dataset-fashion-mnist)
//   train_samples  keep only the first N training samples (0 = all)
//   test_samples   keep only the first N test samples (0 = all)
// Pixels are scaled to [0, 1] (value / 255); features are 784 x N, one image
// per column in row-major pixel order; labels 0..9.
#pragma once

#include <cstddef>
#include <string>

#include "core/data/dataset.h"

namespace fedsim {

inline constexpr const char* kFashionMnistDefaultPath = "/usr/share/datasets/fashion-mnist";

// Loads train-{images,labels} and t10k-{images,labels} from `dir`. A limit of
// 0 means all samples; a limit keeps the first samples of the file (the files
// are in random class order, so a prefix is roughly class-balanced).
// Throws InputError naming the file and what is wrong (cannot open, bad magic
// number, wrong dimensions, label out of range, truncated or corrupt data,
// images and labels of different counts).
DataSplit load_fashion_mnist(const std::string& dir, std::size_t max_train = 0, std::size_t max_test = 0);

}  // namespace fedsim
