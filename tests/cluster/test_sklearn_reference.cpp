// btm's vectorizer, SVD and agreement scores against scikit-learn on a fixture
// (tests/reference/cluster_reference.py writes the expected values and the texts).
#include <gtest/gtest.h>

#include <cmath>

#include "btm/cluster/agreement.hpp"
#include "btm/cluster/fit.hpp"
#include "btm/h5.hpp"

using namespace btm::cluster;

namespace {

struct Reference {
  btm::h5::File f{BTM_CLUSTER_REFERENCE, btm::h5::File::Mode::read};
  std::vector<std::string> texts = f.read_strings("/texts");
};

btm::Comm self() { return btm::Comm(MPI_COMM_SELF); }  // rank 0 alone (after MPI_Init)

}  // namespace

TEST(ClusterSklearn, VocabularyIdfAndTfidfMatchTfidfVectorizer) {
  Reference ref;
  const LocalCounts counts = count_terms(ref.texts);
  const Vocabulary v = fit_vocabulary(counts, ref.texts.size(), self());
  ASSERT_EQ(v.terms, ref.f.read_strings("/vocabulary"));
  const auto idf = ref.f.read<double>("/idf");
  ASSERT_EQ(v.idf.size(), idf.size());
  for (std::size_t j = 0; j < idf.size(); ++j) EXPECT_NEAR(v.idf[j], idf[j], 1e-12) << v.terms[j];
  const Csr x = tfidf_rows(counts, v);
  const auto dense = ref.f.read<double>("/tfidf");  // [n, V]
  const std::size_t V = idf.size();
  std::vector<double> mine(dense.size(), 0.0);
  for (std::uint64_t i = 0; i < x.rows(); ++i) {
    for (auto p = x.row_ptr[i]; p < x.row_ptr[i + 1]; ++p) mine[i * V + x.col[p]] = x.val[p];
  }
  double worst = 0;
  for (std::size_t i = 0; i < dense.size(); ++i) worst = std::max(worst, std::fabs(mine[i] - dense[i]));
  EXPECT_LT(worst, 1e-12);
}

TEST(ClusterSklearn, SvdMatchesTheExactSingularValuesAndSubspace) {
  Reference ref;
  const LocalCounts counts = count_terms(ref.texts);
  const Vocabulary v = fit_vocabulary(counts, ref.texts.size(), self());
  const Csr x = tfidf_rows(counts, v);
  const auto s_ref = ref.f.read<double>("/singular_values");
  const auto c_ref = ref.f.read<double>("/components");  // [dims, V]
  const int dims = static_cast<int>(s_ref.size());
  const auto V = static_cast<std::int64_t>(v.terms.size());
  const RowShard all{0, x.rows()};
  // Converged (40 passes): the exact singular values and vectors.
  const Svd svd = truncated_svd(x, all, x.rows(), V, dims, 1, self(), 40);
  for (int d = 0; d < dims; ++d) {
    EXPECT_NEAR(svd.singular_values[d], s_ref[d], 1e-8 * s_ref[0]) << "singular value " << d;
    // Same direction up to sign.
    double dot = 0;
    for (std::int64_t j = 0; j < V; ++j) dot += svd.term_vectors[j * dims + d] * c_ref[d * V + j];
    EXPECT_NEAR(std::fabs(dot), 1.0, 1e-6) << "component " << d;
  }
  // With the default 5 passes (TruncatedSVD's n_iter) on this flat spectrum the subspace
  // captures nearly all of the exact one's variance, as scikit-learn's randomised solver does.
  const Svd quick = truncated_svd(x, all, x.rows(), V, dims, 1, self());
  double ours = 0, theirs = 0;
  for (int d = 0; d < dims; ++d) {
    ours += quick.singular_values[d] * quick.singular_values[d];
    theirs += s_ref[d] * s_ref[d];
  }
  EXPECT_LE(ours, theirs * (1 + 1e-12));
  EXPECT_GT(ours, 0.98 * theirs);
}

TEST(ClusterSklearn, PurityAndNmiMatchScikitLearn) {
  Reference ref;
  const auto domains = ref.f.read<std::int32_t>("/domains");
  const auto labelings = ref.f.read<std::int32_t>("/labelings");
  const auto purity = ref.f.read<double>("/purity");
  const auto nmi = ref.f.read<double>("/nmi");
  const std::size_t n = domains.size();
  for (std::size_t l = 0; l < purity.size(); ++l) {
    const std::vector<int> clusters(labelings.begin() + l * n, labelings.begin() + (l + 1) * n);
    const Agreement a = agreement(clusters, std::vector<int>(domains.begin(), domains.end()));
    EXPECT_NEAR(a.purity, purity[l], 1e-12) << "labeling " << l;
    EXPECT_NEAR(a.nmi, nmi[l], 1e-12) << "labeling " << l;
  }
}
