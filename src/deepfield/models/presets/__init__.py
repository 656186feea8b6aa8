"""The zoo's networks, one module per family; :mod:`deepfield.models.zoo` names them.

===================  ===========================  =========================================
module               presets                      what
===================  ===========================  =========================================
``course``           lecture-cnn, euclid-quality,  the course's Keras networks
                     dominguez-sanchez
``dieleman``         dieleman                     rotation-invariant Galaxy Zoo CNN
``pasquet``          pasquet                      photo-z CNN with inception blocks, E(B−V)
``spectra``          spectra1d                    1-D CNN for spectra
``tabular``          mlp                          dense networks for catalogues
``resnet``           resnet                       small residual network for stamps
``unet``             unet                         image-to-image U-Net (a functional model)
``diffusion``        diffusion                    denoising diffusion model on the U-Net, DDIM sampling
``cvae``             cvae                         conditional VAE for stamps (a generative model)
===================  ===========================  =========================================

All are Sequentials except ``pasquet`` (two inputs), a :class:`~deepfield.models.presets.base.PresetModel`,
``cvae`` (images and conditions; :mod:`deepfield.models.generative`) and ``diffusion`` (a
:class:`~deepfield.models.presets.base.PresetModel` around a U-Net graph, with a sampler), and ``unet``, a
:class:`~deepfield.models.functional.Functional` (its skips are a graph).
"""
